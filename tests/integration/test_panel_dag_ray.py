"""The real forecast_training DAG on a panel with the Ray engine: ``airflow dags test`` on 8 M4
hourly series (two broken and dropped), seasonal naive and one trial of nlinear, ``engine:
{kind: ray}`` (a local Ray started in the task's process), a real MLflow store.

Asserts that the work went to Ray (the engine's line in the task log) and what it produced:
one registered version, the best on validation, with test metrics for each kept series.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from .conftest import run_dag
from .test_panel_dag import panel_config

KEPT = [f"H{k}" for k in (1, 2, 4, 6, 7, 8)]  # H3 (a gap) and H5 (constant) are dropped


@pytest.fixture(scope="module")
def ray_run(airflow_home, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("panel-ray")
    path = panel_config(tmp)
    cfg = yaml.safe_load(path.read_text())
    data = pd.read_parquet(cfg["data"]["source"]["path"])
    data[data["unique_id"].isin([f"H{k}" for k in range(1, 9)])].to_parquet(
        cfg["data"]["source"]["path"], index=False)
    cfg["name"] = "it-panel-ray"
    cfg["engine"] = {"kind": "ray"}
    cfg["tuning"]["n_trials"] = 1
    cfg["ensemble"] = {"enabled": False}
    cfg["mlflow"] = {"experiment": "it-panel-ray", "registered_model_name": "it-panel-ray"}
    path.write_text(yaml.safe_dump(cfg))
    conf = json.dumps({"config": str(path), "reason": "panel on Ray"})
    proc = run_dag(airflow_home, "forecast_training", conf)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return airflow_home, proc.stdout + proc.stderr


def test_the_panel_dag_runs_on_ray_and_registers_the_best_candidate(ray_run) -> None:
    home, log = ray_run
    assert "engine: Ray 2." in log and "a local Ray in this process" in log
    assert "of 6 series validated (2 dropped)" in log
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    exp = client.get_experiment_by_name("it-panel-ray")
    runs = {r.data.tags["tidemill.algorithm"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"seasonal_naive", "nlinear"}
    best = min(runs.values(), key=lambda r: r.data.metrics["selection_score"])
    version = client.get_model_version_by_alias("it-panel-ray", "champion")
    assert version.run_id == best.info.run_id
    for algorithm, run in runs.items():
        table = pd.read_csv(client.download_artifacts(run.info.run_id,
                                                      "series_metrics_test.csv"))
        assert sorted(table["unique_id"]) == sorted(KEPT), algorithm
        assert (table["mase"] > 0).all() and table["owa"].notna().all(), algorithm
        assert table["mase"].mean() == pytest.approx(run.data.metrics["test_mase"], rel=1e-9)
