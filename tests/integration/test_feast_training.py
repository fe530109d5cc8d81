"""A tabular training set from the feature store: ``tidemill train`` with a ``feast`` source
reads AI4I's labelled events joined point in time with the ``ai4i_machine`` view (Feast's
offline store in the home) and registers a classifier; a record corrected after an event
never enters that event's row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines.feature_store import (
    AI4I_FEATURES,
    AI4I_KEY,
    AI4I_VIEW,
    TIMESTAMP,
    ai4i_source_frame,
    ai4i_training_rows,
    publish,
)
from pipelines.home import HOME_ENV, TidemillHome
from pipelines.tabular.config import parse_tabular_config
from pipelines.tabular.data import read_table

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROWS = 1500
CORRECTED = [5, 50, 500]  # UDIs whose record gets a later-stamped correction


def test_training_set_from_feast_is_point_in_time(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIDEMILL_FEAST_REGISTRY_URL", "TIDEMILL_FEAST_ONLINE_URL",
                 "TIDEMILL_ARTIFACT_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    home = TidemillHome.resolve(tmp_path / "home")
    csv = REPO / "data" / "ai4i2020.csv"
    records = ai4i_source_frame(csv).head(ROWS)
    later = records[records[AI4I_KEY].isin(CORRECTED)].assign(
        **{TIMESTAMP: lambda f: f[TIMESTAMP] + pd.Timedelta(minutes=30), "Torque": 999.0})
    publish(home, pd.concat([records, later], ignore_index=True), AI4I_VIEW)
    events = tmp_path / "events.parquet"
    ai4i_training_rows(csv).head(ROWS).to_parquet(events)

    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"] |= {"source": {"kind": "feast", "view": AI4I_VIEW, "events": str(events),
                                "features": AI4I_FEATURES},
                     "id_columns": [AI4I_KEY, TIMESTAMP], "leakage_columns": []}
    data["algorithms"] = {"logistic_regression": {"params": {"C": 1.0}}}
    data["tuning"] |= {"n_trials": 1}
    data["cv"] = {"method": "stratified", "folds": 2}
    data["mlflow"] = {"experiment": "it-feast", "registered_model_name": "it-feast-ai4i"}
    config = tmp_path / "ai4i-feast.yaml"
    config.write_text(yaml.safe_dump(data))

    monkeypatch.setenv(HOME_ENV, str(home.root))
    table = read_table(parse_tabular_config(data, origin=str(config)).data)
    raw = pd.read_csv(csv, encoding="utf-8-sig").head(ROWS)
    np.testing.assert_array_equal(table["Torque"].to_numpy(), raw["Torque"].to_numpy())
    assert (table["Torque"] != 999.0).all()  # the corrections came after every event
    assert table["Machine failure"].tolist() == raw["Machine failure"].tolist()

    proc = subprocess.run(
        [str(BIN / "tidemill"), "train", "--config", str(config), "--home", str(home.root)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ingest: reading feature view 'ai4i_machine' at the events of" in proc.stdout
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    version = client.get_model_version("it-feast-ai4i", "1")
    assert version.tags["tidemill.task"] == "classification"
