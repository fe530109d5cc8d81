"""The real tabular_training DAG (airflow dags test) on an AI4I 2020 slice with a real
MLflow store: it registers a classifier; bad data fails at ingest without retries."""

from __future__ import annotations

import json

import pandas as pd
import yaml
from mlflow import MlflowClient

from .conftest import REPO, run_dag

NAME = "it-dag-ai4i"


def _config(tmp_path, csv=None):
    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"]["source"]["path"] = str(csv or REPO / "data" / "ai4i2020.csv")
    data["data"]["rows"] = {"start": 2000, "stop": 5000}
    data["algorithms"] = {
        "lightgbm": {
            "params": {"n_estimators": 100},
            "search_space": {"num_leaves": {"type": "int", "low": 8, "high": 32}},
        },
        "naive_bayes": {},
    }
    data["tuning"] |= {"n_trials": 2, "method": "random"}
    data["cv"] = {"method": "stratified", "folds": 2}
    data["mlflow"] = {"experiment": "it-dag-ai4i", "registered_model_name": NAME}
    path = tmp_path / "dag-ai4i.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tabular_dag_registers_a_classifier(airflow_home, tmp_path):
    conf = {"config": str(_config(tmp_path)), "reason": "integration test"}
    proc = run_dag(airflow_home, "tabular_training", json.dumps(conf))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    client = MlflowClient(airflow_home.mlflow_uri, registry_uri=airflow_home.mlflow_uri)
    mv = client.get_model_version(NAME, "1")
    assert sorted(mv.aliases) == ["challenger", "champion"]
    assert mv.tags["tidemill.task"] == "classification"
    assert mv.tags["tidemill.algorithm"] in {"lightgbm", "naive_bayes"}
    assert "## Metrics on the test split" in mv.description
    runs = client.search_runs([client.get_experiment_by_name("it-dag-ai4i").experiment_id])
    assert {r.data.tags["tidemill.algorithm"] for r in runs} == {"lightgbm", "naive_bayes"}
    assert "[tune lightgbm] trial 2/2" in out
    assert f"register: {NAME} version 1" in out


def test_tabular_dag_bad_data_fails_without_retry(airflow_home, tmp_path):
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig", nrows=5000)
    frame["Machine failure"] = frame["Machine failure"].astype(object)
    frame.loc[2999, "Machine failure"] = None  # data row 3000
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    runs = airflow_home.runs_dir
    before = set(runs.rglob("*")) if runs.exists() else set()
    proc = run_dag(
        airflow_home, "tabular_training", json.dumps({"config": str(_config(tmp_path, bad))})
    )
    out = proc.stdout + proc.stderr
    assert "'Machine failure' (target): 1 missing label(s) at row 3000" in out, out[-4000:]
    assert "up_for_retry" not in out.lower()
    after = set(runs.rglob("*")) if runs.exists() else set()
    assert not [p for p in after - before if p.is_file()]
