"""The Feast feature store on real data (ETTh1's load covariates): point-in-time-correct training
rows (a value stamped after a row's time never enters it), materialisation into the online
store (SQLite locally, PostgreSQL as on Kubernetes) and online lookups that name an unknown
entity."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.feature_store import (
    ENTITY_KEY,
    ETTH1_COVARIATES,
    ONLINE_ENV,
    REGISTRY_ENV,
    TIMESTAMP,
    FeatureStoreError,
    etth1_source_frame,
    historical_features,
    materialize,
    online_features,
    publish,
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
