"""The real drift_monitor and promote_challenger DAGs (airflow dags test) on small data.

One registered model ``loop-forecaster`` in a real MLflow store: v1 seasonal naive (champion),
v2 NLinear (challenger, clearly better), v3 seasonal naive again (worse than the new champion).
"""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from datetime import UTC, datetime

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sqlalchemy import insert

from pipelines.workflow import run_pipeline
from serving.prediction_log.schema import actuals, engine_for, prediction_requests
from serving.split import LocalSplitBackend

from .conftest import REPO, SMALL_CONFIG, run_dag

NAME = "loop-forecaster"


@pytest.fixture(scope="module")
def loop(airflow_home, tmp_path_factory):
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["name"] = "loop"
    cfg["mlflow"] = {"experiment": "loop", "registered_model_name": NAME}
    cfg["tuning"]["n_trials"] = 1
    path = tmp_path_factory.mktemp("loop") / "loop.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_pipeline(path, airflow_home, run_key="loop-v1", algorithms=["seasonal_naive"])
    return airflow_home, path


def _client(home):
    return MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)


def _aliases(home):
    return {a: str(v) for a, v in _client(home).get_registered_model(NAME).aliases.items()}


def _queued_retraining(home):
    db = sqlite3.connect(home.airflow_home / "airflow.db")
    try:
        rows = db.execute(
            "select conf from dag_run where dag_id = 'forecast_training'"
            " and triggered_by = 'OPERATOR'"
        ).fetchall()
    finally:
        db.close()
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


def _window_csv(tmp_path, shift_std: float):
    raw = pd.read_csv(REPO / "data" / "ETTh1.csv", nrows=2400)
    window = raw.iloc[2400 - 700 - 168 : 2400 - 700].copy()  # inside the training rows
    window["OT"] += shift_std * raw["OT"].iloc[:1700].std()
    path = tmp_path / f"batch-{shift_std}.csv"
    window.to_csv(path, index=False)
    return path


def _drift(home, cfg, batch):
    conf = {"config": str(cfg), "current_path": str(batch), "window_rows": 168}
    proc = run_dag(home, "drift_monitor", json.dumps(conf))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_unshifted_data_does_not_trigger_retraining(loop, tmp_path):
    home, cfg = loop
    out = _drift(home, cfg, _window_csv(tmp_path, 0.0))
    assert "drift_monitor: no drift" in out
    assert _queued_retraining(home) == []
    reports = list((home.reports_dir / NAME).glob("*/"))
    assert reports and any(reports[0].glob("*.html"))


def test_shifted_data_triggers_retraining_with_reason(loop, tmp_path):
    home, cfg = loop
    out = _drift(home, cfg, _window_csv(tmp_path, 3.0))
    assert "drift_monitor: DRIFT" in out
    confs = _queued_retraining(home)
    assert len(confs) == 1
    assert confs[0]["config"] == str(cfg)
    assert confs[0]["reason"].startswith("drift: ") and "y" in confs[0]["reason"]


def _promote(home, cfg):
    proc = run_dag(home, "promote_challenger", json.dumps({"config": str(cfg)}))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_clearly_better_challenger_is_promoted(loop):
    home, cfg = loop
    run_pipeline(cfg, home, run_key="loop-v2", algorithms=["nlinear"])
    assert _aliases(home) == {"champion": "1", "challenger": "2"}
    out = _promote(home, cfg)
    assert "version 2 promoted" in out
    assert _aliases(home) == {"champion": "2", "previous_champion": "1"}
    client = _client(home)
    v2, v1 = client.get_model_version(NAME, "2"), client.get_model_version(NAME, "1")
    assert v2.current_stage == "Production" and v1.current_stage == "Archived"
    assert v2.tags["tidemill.promotion_decided_by"].startswith("airflow:promote_challenger:")
    assert "challenger significantly better" in v2.tags["tidemill.promotion_reason"]
    assert json.loads(v2.tags["tidemill.promotion_evidence"])["backtest"]["decision"] == "promote"
    split = LocalSplitBackend.for_home(home).get()
    assert (split.champion_uri, split.challenger_uri) == (f"models:/{NAME}/2", None)


def test_worse_challenger_is_archived_not_promoted(loop):
    home, cfg = loop
    run_pipeline(cfg, home, run_key="loop-v3", algorithms=["seasonal_naive"])
    out = _promote(home, cfg)
    assert "version 3 archived" in out
    assert _aliases(home) == {"champion": "2", "previous_champion": "1"}
    v3 = _client(home).get_model_version(NAME, "3")
    assert v3.current_stage == "Archived"
    assert "backtest: challenger worse" in v3.tags["tidemill.promotion_reason"]
    split = LocalSplitBackend.for_home(home).get()
    assert (split.champion_uri, split.challenger_uri) == (f"models:/{NAME}/2", None)


def test_degrading_new_champion_is_rolled_back(loop, tmp_path):
    """Live errors of the promoted v2 far above its validation MAE -> back to v1."""
    home, cfg = loop
    engine = engine_for(home.prediction_log_uri)
    now = datetime.now(UTC).replace(tzinfo=None)
    ds = pd.date_range("2016-10-01", periods=30, freq="h")
    epochs = [int(t.timestamp()) for t in ds]  # the payload's timestamps: epoch seconds
    with engine.begin() as conn:
        conn.execute(insert(prediction_requests), [
            {"request_id": f"r{i}", "ts": now, "caller": "c", "variant": "champion",
             "model_name": NAME, "model_version": "2", "windows": 1, "horizon": 1,
             "exog_columns": 0,
             "payload": {"series_id": ["ETTh1"], "history_len": [96],
                         "history_last_ds": [epochs[0] - 3600], "history_mean": [10.0],
                         "history_std": [1.0], "history_last": [10.0], "ds": [[epoch]],
                         "yhat": [[10.0]], "lower": [[9.0]], "upper": [[11.0]]}}
            for i, epoch in enumerate(epochs)])
        conn.execute(insert(actuals), [
            {"series_id": "ETTh1", "ds": t.strftime("%Y-%m-%dT%H:%M:%S"), "y": 40.0,
             "received_at": now, "request_id": None} for t in ds])
    client = _client(home)
    assert int(client.get_model_version(NAME, "2").tags["tidemill.promoted_at"]) <= time.time()
    out = _drift(home, cfg, _window_csv(tmp_path, 0.0))
    assert "rollback_watch: champion v2 rolled back" in out
    assert _aliases(home)["champion"] == "1"
    assert "live MAE 30" in client.get_model_version(NAME, "2").tags["tidemill.rolled_back"]
    split = LocalSplitBackend.for_home(home).get()
    assert split.champion_uri == f"models:/{NAME}/1"
