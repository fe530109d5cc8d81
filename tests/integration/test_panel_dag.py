"""The real forecast_training DAG on a panel: 20 M4 hourly series (short histories), two of them
broken and dropped by the ``invalid_series: drop`` policy, a real MLflow store.

Asserts what a user sees: the dropped series and why (task log and MLflow artifact), per-series
metrics and plots, and one registered version that forecasts a batch of different series and
names an unknown one.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines.data.validate import DataValidationError
from pipelines.workflow import ingest

from .conftest import REPO, run_dag

M4 = REPO / "data" / "m4" / "hourly_long.parquet"
ROWS = 284  # per series: enough for lookback 48, two CV folds, validation and test


def panel_config(tmp: Path, policy: str = "drop") -> Path:
    """20 M4 series (their last ROWS hours), H3 with a gap and H5 made constant."""
    data = pd.read_parquet(M4)
    data = data[data["unique_id"].isin([f"H{k}" for k in range(1, 21)])]
    data = data.groupby("unique_id", sort=False).tail(ROWS)
    gap = data.index[(data["unique_id"] == "H3")][100]
    data = data.drop(index=gap)
    data.loc[data["unique_id"] == "H5", "y"] = 42.0
    data.to_parquet(tmp / "panel.parquet", index=False)
    cfg = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    cfg["name"] = f"it-panel-{policy}"
    cfg["data"]["source"]["path"] = str(tmp / "panel.parquet")
    cfg["data"]["invalid_series"] = policy
    cfg["horizon"] = 24
    cfg["split"] = {"val_size": 48, "test_size": 24}  # 25 windows: the weighted ensemble's
    cfg["algorithms"] = {
        "seasonal_naive": {"params": {"season": 24}},
        "nlinear": {
            "params": {"lookback": 48},
            "search_space": {"alpha": {"type": "float", "low": 0.1, "high": 100, "log": True}},
        },
    }
    cfg["tuning"] = {"n_trials": 2, "cv_folds": 2, "seed": 7, "metric": "mase",
                     "max_origins_per_fold": 4}
    cfg["mlflow"] = {"experiment": "it-panel", "registered_model_name": "it-panel-forecaster"}
    path = tmp / f"panel-{policy}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def panel_run(airflow_home, tmp_path_factory):
    config = panel_config(tmp_path_factory.mktemp("panel"))
    conf = json.dumps({"config": str(config), "reason": "panel integration test"})
    proc = run_dag(airflow_home, "forecast_training", conf)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return airflow_home, proc


def test_bad_series_are_dropped_with_reasons_in_log_and_mlflow(panel_run):
    home, proc = panel_run
    out = proc.stdout + proc.stderr
    assert "dropped series 'H3': gaps or off-grid timestamps (frequency 'h')" in out
    assert "dropped series 'H5': constant target in the training rows" in out
    assert "of 18 series validated (2 dropped)" in out
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    mv = client.get_model_version("it-panel-forecaster", "1")
    local = client.download_artifacts(mv.run_id, "validation.json")
    report = json.loads(Path(local).read_text())
    assert report["series"] == 18 and report["policy"] == "drop"
    assert sorted(report["dropped"]) == ["H3", "H5"]


def test_per_series_metrics_and_plots_are_logged(panel_run):
    home, _ = panel_run
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    exp = client.get_experiment_by_name("it-panel")
    runs = {r.data.tags["tidemill.algorithm"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"seasonal_naive", "nlinear", "ensemble"}  # m4_hourly's ensemble: on
    params = runs["ensemble"].data.params  # weighted: the train tasks saved what it weighs
    assert params["hp.combine"] == "weighted"
    members, weights = ast.literal_eval(params["hp.members"]), json.loads(params["hp.weights"])
    assert set(members) <= {"seasonal_naive", "nlinear"} and len(weights) == len(members) >= 1
    assert min(weights) > 0 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    # in sample it never loses to its best member; it is selected on its cross-fitted score
    assert runs["ensemble"].data.metrics["selection_score_in_sample"] <= 1e-9 + min(
        runs[a].data.metrics["selection_score"] for a in ("seasonal_naive", "nlinear"))
    assert runs["ensemble"].data.metrics["selection_score"] == (
        runs["ensemble"].data.metrics["selection_score_cross_fitted"])
    for algo, run in runs.items():
        m = run.data.metrics
        assert m["test_mase"] > 0 and 0 <= m["test_coverage"] <= 1, algo
        table = pd.read_csv(client.download_artifacts(run.info.run_id, "series_metrics_test.csv"))
        assert len(table) == 18 and "H3" not in set(table["unique_id"])
        # the run's MASE is the mean of the series' (one test window each)
        assert table["mase"].mean() == pytest.approx(m["test_mase"], rel=1e-9)
        ratios = (m["test_smape"] / m["test_naive2_smape"], m["test_mase"] / m["test_naive2_mase"])
        assert m["test_owa"] == pytest.approx(sum(ratios) / 2)
        assert table["owa"].notna().all()
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        for name in ("error_distribution.png", "series_best.png", "series_worst.png",
                     "forecast_vs_actual.png"):
            assert f"plots/{name}" in plots, (algo, plots)
    best = min(runs.values(), key=lambda r: r.data.metrics["selection_score"])
    assert client.get_model_version("it-panel-forecaster", "1").run_id == best.info.run_id


def test_one_version_forecasts_a_batch_of_series_and_names_unknown_ones(panel_run):
    home, _ = panel_run
    code = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({home.mlflow_uri!r})
        model = mlflow.pyfunc.load_model("models:/it-panel-forecaster@champion")
        data = pd.read_parquet({str(M4)!r})
        hist = data[data["unique_id"].isin(["H1", "H7", "H12"])].groupby("unique_id").tail(200)
        out = model.predict(hist, params={{"horizon": 24}})
        levels = out.groupby("unique_id")["yhat"].mean().to_dict()
        actual = hist.groupby("unique_id")["y"].mean().to_dict()
        try:
            model.predict(hist[hist["unique_id"] == "H1"].assign(unique_id="H999"))
            error = None
        except Exception as exc:
            error = str(exc)
        print(json.dumps({{"rows": len(out), "levels": levels, "actual": actual,
                          "error": error}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 3 * 24
    for uid, level in result["levels"].items():  # each series forecast at its own scale
        assert abs(level - result["actual"][uid]) < 0.5 * result["actual"][uid], uid
    assert "unknown series 'H999'" in result["error"]


def test_fail_policy_names_every_bad_series_and_writes_nothing(tmp_path):
    config = panel_config(tmp_path, policy="fail")
    run_dir = tmp_path / "run"
    with pytest.raises(DataValidationError) as info:
        ingest(config, run_dir)
    message = str(info.value)
    assert "2 series with problems (invalid_series: fail)" in message
    assert "'H3': gaps or off-grid timestamps" in message and "'H5': constant target" in message
    assert not run_dir.exists()
