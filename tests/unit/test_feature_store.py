"""The Feast feature store on real data (ETTh1's load covariates, AI4I 2020's machine records):
point-in-time-correct training rows (a value stamped after a row's time never enters it),
materialisation into the online store (SQLite locally, PostgreSQL as on Kubernetes) and online
lookups that name an unknown entity."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.feature_store import (
    AI4I_FEATURES,
    AI4I_KEY,
    AI4I_LABEL,
    AI4I_VIEW,
    ENTITY_KEY,
    ETTH1_COVARIATES,
    ETTH1_VIEW,
    MATERIALIZE_FROM,
    ONLINE_ENV,
    REGISTRY_ENV,
    TIMESTAMP,
    FeatureStoreError,
    ai4i_source_frame,
    ai4i_training_rows,
    ai4i_training_set,
    etth1_source_frame,
    historical_features,
    materialize,
    materialize_end,
    online_features,
    publish,
    publish_csvs,
)
from pipelines.home import TidemillHome
from tests.servers import Postgres, postgres

REPO = Path(__file__).resolve().parents[2]
HOURS = 500


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    return etth1_source_frame(REPO / "data" / "ETTh1.csv").head(HOURS)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: pd.DataFrame) -> TidemillHome:
    for name in (REGISTRY_ENV, ONLINE_ENV, "TIDEMILL_ARTIFACT_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    home = TidemillHome.resolve(tmp_path / "home")
    publish(home, source)
    return home


def test_training_rows_never_see_a_later_value(home: TidemillHome, source: pd.DataFrame) -> None:
    """Rows between two measurements get the earlier one; a row before the first measurement
    gets nothing (no value from its future)."""
    stamps = source[TIMESTAMP]
    rows = pd.DataFrame({
        ENTITY_KEY: "ETTh1",
        TIMESTAMP: [stamps[10] + pd.Timedelta(minutes=59), stamps[10], stamps[0]
                    - pd.Timedelta(minutes=1), stamps[300] + pd.Timedelta(minutes=30)],
        "y": [1.0, 2.0, 3.0, 4.0],
    })  # fmt: skip
    out = historical_features(home, rows, ETTH1_COVARIATES)
    assert list(out["y"]) == [1.0, 2.0, 3.0, 4.0]  # the caller's rows, in order
    expected = source[ETTH1_COVARIATES].to_numpy()
    np.testing.assert_allclose(out.loc[0, ETTH1_COVARIATES].to_numpy(float), expected[10])
    np.testing.assert_allclose(out.loc[1, ETTH1_COVARIATES].to_numpy(float), expected[10])
    assert out.loc[2, ETTH1_COVARIATES].isna().all()
    np.testing.assert_allclose(out.loc[3, ETTH1_COVARIATES].to_numpy(float), expected[300])
    # every row of a whole training window: the value at its own hour, never the next one
    window = pd.DataFrame({ENTITY_KEY: "ETTh1", TIMESTAMP: stamps[50:250] + pd.Timedelta(
        minutes=30)})
    joined = historical_features(home, window, ["HUFL"])
    np.testing.assert_allclose(joined["HUFL"].to_numpy(float),
                               source["HUFL"].to_numpy()[50:250])


def test_ai4i_training_set_is_point_in_time(home: TidemillHome) -> None:
    """The tabular view: each labelled AI4I event gets its record's features; a correction of
    a machine's record stamped after an event never enters that event's row (only a later
    event's), and an event before a machine's first record gets nothing."""
    csv = REPO / "data" / "ai4i2020.csv"
    records = ai4i_source_frame(csv).head(200)
    stamp = records.loc[records[AI4I_KEY] == 10, TIMESTAMP].iloc[0]
    original, kind = records.loc[records[AI4I_KEY] == 10, ["Torque", "Type"]].iloc[0]
    corrected = records[records[AI4I_KEY] == 10].assign(
        **{TIMESTAMP: stamp + pd.Timedelta(hours=1), "Torque": original + 100.0,
           "Type": "H" if kind != "H" else "L"})
    publish(home, pd.concat([records, corrected], ignore_index=True), AI4I_VIEW)

    rows = ai4i_training_rows(csv).head(200)
    training = ai4i_training_set(home, rows)
    assert list(training.columns) == [AI4I_KEY, *AI4I_FEATURES, AI4I_LABEL]
    raw = pd.read_csv(csv, encoding="utf-8-sig").head(200)
    pd.testing.assert_frame_equal(training[AI4I_FEATURES], raw[AI4I_FEATURES],
                                  check_dtype=False)  # every row: its own record, not the fix
    assert training[AI4I_LABEL].tolist() == raw[AI4I_LABEL].tolist()

    later = pd.DataFrame({AI4I_KEY: [10, 10, 10, 10], TIMESTAMP: [
        stamp, stamp + pd.Timedelta(minutes=59), stamp + pd.Timedelta(hours=1),
        stamp - pd.Timedelta(seconds=1)]})
    joined = historical_features(home, later, ["Torque", "Type"], view=AI4I_VIEW)
    assert joined["Torque"].tolist()[:3] == [original, original, original + 100.0]
    assert joined["Type"].tolist()[:3] == [kind, kind, corrected["Type"].iloc[0]]
    assert joined.loc[3, ["Torque", "Type"]].isna().all()  # before its first record

    materialize(home, datetime(2016, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    online = online_features(home, [10, 11], ["Torque", "Type"], view=AI4I_VIEW)
    assert online["Torque"].tolist() == [original + 100.0, records["Torque"].iloc[10]]
    with pytest.raises(FeatureStoreError, match=r"UDI \[5000\]"):
        online_features(home, [10, 5000], ["Torque"], view=AI4I_VIEW)


def test_sync_publishes_the_csvs_given_and_materialises_every_view(
        home: TidemillHome, source: pd.DataFrame, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What the feature_materialize DAG, ``tidemill features sync`` and ``tidemill up`` run: a
    view given no CSV keeps its source, every registered view is materialised, a line each;
    an unknown view is refused by name before anything is written."""
    with pytest.raises(FeatureStoreError, match="no feature view 'weather'"):
        publish_csvs(home, {"weather": REPO / "data" / "ETTh1.csv"})
    csv = tmp_path / "ai4i-60.csv"
    pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig", nrows=60).to_csv(
        csv, index=False)
    assert len(publish_csvs(home, {ETTH1_VIEW: None, AI4I_VIEW: csv})) == 1
    assert materialize_end("2021-01-01T00:00") == datetime(2021, 1, 1, tzinfo=UTC)
    materialize(home, MATERIALIZE_FROM, materialize_end("2021-01-01T00:00"))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[tidemill]")]
    assert f"[tidemill] features: published ai4i_machine (60 rows of {csv}) in" in lines[0]
    assert [ln.split(" in ")[0] for ln in lines[1:3]] == [
        "[tidemill] features: materialised ai4i_machine (1/2)",
        "[tidemill] features: materialised etth1_covariates (2/2)"]
    assert online_features(home, ["ETTh1"], ["HUFL"]).loc[0, "HUFL"] == pytest.approx(
        source["HUFL"].iloc[-1])  # the fixture's 500 hours, kept
    assert online_features(home, [60], ["Type"], view=AI4I_VIEW).loc[0, "Type"] == \
        pd.read_csv(csv, encoding="utf-8-sig")["Type"].iloc[-1]


def _online_round_trip(home: TidemillHome, source: pd.DataFrame) -> None:
    end = source[TIMESTAMP].iloc[199].to_pydatetime()
    materialize(home, datetime(2016, 1, 1, tzinfo=UTC), end)
    found = online_features(home, ["ETTh1"], ["HUFL", "LULL"])
    assert found.loc[0, "HUFL"] == pytest.approx(source["HUFL"].iloc[199])
    assert found.loc[0, "LULL"] == pytest.approx(source["LULL"].iloc[199])
    with pytest.raises(FeatureStoreError, match=r"series_id \['ETTm9'\]"):
        online_features(home, ["ETTh1", "ETTm9"], ["HUFL"])


def test_materialised_values_are_served_online(home: TidemillHome, source: pd.DataFrame) -> None:
    _online_round_trip(home, source)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres() as server:
        server.create_database("feast")
        yield server


def test_online_store_on_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    pg: Postgres, source: pd.DataFrame) -> None:
    """The Kubernetes layout: registry and online store in PostgreSQL, nothing in the home."""
    monkeypatch.setenv(REGISTRY_ENV, pg.url("feast"))
    monkeypatch.setenv(ONLINE_ENV, pg.url("feast", driver="postgresql"))
    monkeypatch.delenv("TIDEMILL_ARTIFACT_STORE_URL", raising=False)
    home = TidemillHome.resolve(tmp_path / "home")
    publish(home, source)
    _online_round_trip(home, source)
    assert not (home.root / "feast").exists()


def test_using_feast_leaves_the_environment_as_it_was(tmp_path: Path) -> None:
    """Feast's import sets PROMETHEUS_MULTIPROC_DIR in os.environ; a process that publishes and
    registers features (the platform API, a DAG task) must not pass it on to what it starts."""
    script = (
        "import os, sys\n"
        "from pipelines.feature_store import etth1_source_frame, publish\n"
        "from pipelines.home import TidemillHome\n"
        "home = TidemillHome.resolve(sys.argv[1])\n"
        f"publish(home, etth1_source_frame({str(REPO / 'data' / 'ETTh1.csv')!r}).head(50))\n"
        "print(sorted(k for k in os.environ if k.startswith('PROMETHEUS')))\n"
    )
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PROMETHEUS") and k not in (REGISTRY_ENV, ONLINE_ENV,
                                                           "TIDEMILL_ARTIFACT_STORE_URL")}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "home")], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
