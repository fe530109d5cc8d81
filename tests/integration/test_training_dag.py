"""The real forecast_training DAG (airflow dags test) on a small ETTh1 slice.

Asserts what a user sees afterwards: the registered version, its aliases, the candidate runs
with their test metrics, and that the model loads and predicts in a fresh process.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from mlflow import MlflowClient

from pipelines.workflow import run_pipeline

from .conftest import REPO, SMALL_CONFIG, run_dag

ALGORITHMS = {"seasonal_naive", "nlinear", "arima", "xgboost", "lstm"}


@pytest.fixture(scope="module")
def dag_run(airflow_home, small_config):
    conf = json.dumps({"config": str(small_config), "reason": "integration test"})
    proc = run_dag(airflow_home, "forecast_training", conf)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return airflow_home, proc


def test_registers_champion_and_challenger(dag_run):
    home, proc = dag_run
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    versions = client.search_model_versions("name='it-forecaster'")
    assert [str(v.version) for v in versions] == ["1"]
    mv = client.get_model_version("it-forecaster", "1")
    assert sorted(mv.aliases) == ["challenger", "champion"]
    assert mv.current_stage == "Production"
    assert mv.tags["tidemill.algorithm"] in ALGORITHMS
    assert len(mv.tags["tidemill.snapshot_sha256"]) == 64
    assert "register: it-forecaster version 1" in proc.stdout + proc.stderr


def test_every_candidate_is_a_run_with_test_metrics(dag_run):
    home, _ = dag_run
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    exp = client.get_experiment_by_name("it-small")
    runs = client.search_runs([exp.experiment_id])
    by_algo = {r.data.tags["tidemill.algorithm"]: r for r in runs}
    assert set(by_algo) == ALGORITHMS
    for algo, run in by_algo.items():
        m = run.data.metrics
        for key in (
            "val_mae",
            "test_mae",
            "test_rmse",
            "test_smape",
            "test_wape",
            "test_mase",
            "test_coverage",
        ):
            assert key in m, f"{algo} lacks {key}"
        assert 0 <= m["test_coverage"] <= 1
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/forecast_vs_actual.png" in arts
    # the registered version is the best by validation MAE
    best = min(by_algo.values(), key=lambda r: r.data.metrics["val_mae"])
    mv = client.get_model_version("it-forecaster", "1")
    assert mv.run_id == best.info.run_id
    # tuned algorithms have their Optuna history plot
    tuned = {a.path for a in client.list_artifacts(by_algo["nlinear"].info.run_id, "plots")}
    assert "plots/optuna_history.html" in tuned


def test_champion_loads_and_predicts_in_fresh_process(dag_run):
    home, _ = dag_run
    code = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({home.mlflow_uri!r})
        model = mlflow.pyfunc.load_model("models:/it-forecaster@champion")
        hist = pd.read_csv({str(REPO / "data" / "ETTh1.csv")!r}, nrows=1200)
        df = pd.DataFrame({{"ds": pd.to_datetime(hist["date"]), "y": hist["OT"]}})
        out = model.predict(df.iloc[:600], params={{"horizon": 6}})
        two = pd.concat([df.iloc[:600].assign(unique_id="a"), df.iloc[600:].assign(unique_id="b")])
        both = model.predict(two, params={{"horizon": 6}})
        optional = [c.name for c in model.metadata.get_input_schema().inputs if not c.required]
        print(json.dumps({{"rows": len(out), "cols": list(out.columns),
                          "first_ds": str(out["ds"].iloc[0]),
                          "ordered": bool((out["yhat_lower"] <= out["yhat"]).all()
                                          and (out["yhat"] <= out["yhat_upper"]).all()),
                          "ids": both["unique_id"].tolist(),
                          "b_first_ds": str(both["ds"].iloc[6]), "optional": optional}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 6
    assert result["cols"] == ["unique_id", "ds", "step", "yhat", "yhat_lower", "yhat_upper"]
    assert result["first_ds"] == "2016-07-26 00:00:00"  # one hour after row 600
    assert result["ordered"]
    assert result["optional"] == ["unique_id"]
    assert result["ids"] == ["a"] * 6 + ["b"] * 6
    assert result["b_first_ds"] == "2016-08-20 00:00:00"  # one hour after row 1200


def test_second_registration_is_challenger_only(dag_run, small_config):
    """Without Airflow (tidemill train's path): v2 gets challenger, v1 keeps champion."""
    home, _ = dag_run
    run_pipeline(small_config, home, run_key="cli-second", algorithms=["nlinear"], n_trials=1)
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    assert str(client.get_model_version_by_alias("it-forecaster", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("it-forecaster", "challenger").version) == "2"
    assert client.get_model_version("it-forecaster", "2").current_stage == "Staging"


def test_bad_data_fails_without_retry_and_writes_nothing(airflow_home, tmp_path):
    lines = (REPO / "data" / "ETTh1.csv").read_text().splitlines()[:1500]
    lines[10] = lines[10].rsplit(",", 1)[0] + ",not-a-number"  # data row 10, column OT
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["data"]["source"]["path"] = str(bad)
    cfg_path = tmp_path / "bad.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    runs = airflow_home.runs_dir
    before = set(runs.rglob("*")) if runs.exists() else set()
    proc = run_dag(airflow_home, "forecast_training", json.dumps({"config": str(cfg_path)}))
    out = proc.stdout + proc.stderr
    assert "not-a-number" in out and "row 10" in out, out[-4000:]
    assert "ingest" in out and "up_for_retry" not in out.lower()
    after = set(runs.rglob("*")) if runs.exists() else set()
    assert not [p for p in after - before if p.is_file()]
