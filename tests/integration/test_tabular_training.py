"""Tabular training end to end: ``tidemill train`` on an AI4I 2020 slice with a real MLflow
store registers a classifier with its model card; the champion predicts probabilities in a
fresh process; bad data stops the run before anything is written."""

from __future__ import annotations

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
from pipelines.home import TidemillHome
from pipelines.registry import use_store
from pipelines.tabular.workflow import run_pipeline

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "it-ai4i"


def small_config(tmp_path: Path, csv: Path | None = None) -> Path:
    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"]["source"]["path"] = str(csv or REPO / "data" / "ai4i2020.csv")
    data["data"]["rows"] = {"start": 0, "stop": 4000}  # 4,000 rows, 128 failures
    data["algorithms"] = {
        "lightgbm": {
            "params": {"n_estimators": 200},
            "search_space": {"num_leaves": {"type": "int", "low": 8, "high": 32}},
        },
        "logistic_regression": {"params": {"C": 1.0}},
    }
    data["tuning"] |= {"n_trials": 2}
    data["cv"] = {"method": "stratified", "folds": 2}
    data["mlflow"] = {"experiment": "it-ai4i", "registered_model_name": NAME}
    path = tmp_path / "ai4i-small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tabular")
    home = TidemillHome.resolve(tmp / "home")
    proc = subprocess.run(
        [str(BIN / "tidemill"), "train", "--config", str(small_config(tmp)), "--home",
         str(home.root)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return home, proc.stdout


def test_registers_the_best_classifier_with_a_model_card(trained):
    home, out = trained
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    mv = client.get_model_version(NAME, "1")
    assert sorted(mv.aliases) == ["challenger", "champion"]
    assert mv.current_stage == "Production"
    assert mv.tags["tidemill.task"] == "classification"
    sha = mv.tags["tidemill.snapshot_sha256"]
    for section in ("## Intended use", "## Training data", "## Metrics on the test split",
                    "## Limitations", "## Ethical considerations", "| f1 |", sha):  # fmt: skip
        assert section in mv.description
    assert "TWF: leakage column" in mv.description.replace("`", "")
    assert client.get_registered_model(NAME).description.startswith("Tidemill classification")
    assert f"register: {NAME} version 1" in out
    assert "[tune lightgbm] trial 2/2" in out  # per-trial progress


def test_every_candidate_logs_metrics_plots_and_importance(trained):
    home, _ = trained
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    exp = client.get_experiment_by_name("it-ai4i")
    runs = {r.data.tags["tidemill.algorithm"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"lightgbm", "logistic_regression"}
    for algo, run in runs.items():
        m = run.data.metrics
        for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc",
                    "pr_auc", "log_loss"):  # fmt: skip
            assert 0 <= m[f"test_{key}"] <= (1 if key != "log_loss" else 10), (algo, key)
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        for name in ("confusion_matrix", "roc_curve", "pr_curve", "calibration"):
            assert f"plots/{name}.png" in plots
        importance = {a.path for a in client.list_artifacts(run.info.run_id, "importance")}
        assert "importance/permutation_importance.png" in importance
    lgbm = runs["lightgbm"]
    assert "plots/loss_curves.png" in {
        a.path for a in client.list_artifacts(lgbm.info.run_id, "plots")
    }
    assert "importance/shap_summary.png" in {
        a.path for a in client.list_artifacts(lgbm.info.run_id, "importance")
    }
    curve = client.get_metric_history(lgbm.info.run_id, "loss_valid_binary_logloss")
    assert len(curve) > 1
    # the registered version is the best by validation PR-AUC
    best = max(runs.values(), key=lambda r: r.data.metrics["val_pr_auc"])
    assert client.get_model_version(NAME, "1").run_id == best.info.run_id


def test_champion_predicts_probabilities_in_a_fresh_process(trained):
    home, _ = trained
    code = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({home.mlflow_uri!r})
        model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        raw = pd.read_csv({str(REPO / "data" / "ai4i2020.csv")!r}, encoding="utf-8-sig")
        rows = raw.iloc[9000:9400]
        features = rows[["Type", "Air temperature", "Process temperature", "Rotational speed",
                         "Torque", "Tool wear"]]
        out = model.predict(features)
        from sklearn.metrics import roc_auc_score
        print(json.dumps({{"cols": list(out.columns), "rows": len(out),
                          "labels": sorted(out["prediction"].unique().tolist()),
                          "auc": roc_auc_score(rows["Machine failure"], out["prediction_proba"]),
                          "inputs": [c.name for c in model.metadata.get_input_schema().inputs]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cols"] == ["prediction", "prediction_proba", "proba_0", "proba_1"]
    assert result["rows"] == 400 and set(result["labels"]) <= {0, 1}
    assert result["auc"] > 0.8  # rows the model never saw
    assert "Machine failure" not in result["inputs"] and "TWF" not in result["inputs"]


def test_bad_data_stops_before_anything_is_written(tmp_path):
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig", nrows=500)
    frame["Torque"] = frame["Torque"].astype(object)
    frame.loc[41, "Torque"] = "n/a?"
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    home = TidemillHome.resolve(tmp_path / "home")
    with pytest.raises(DataValidationError, match=r"'Torque'.*row 42 \('n/a\?'\)"):
        run_pipeline(small_config(tmp_path, bad), home, run_key="bad")
    assert not (home.runs_dir / "bad").exists()
    assert not (home.root / "mlflow.db").exists()


def _variant(tmp_path: Path, name: str, changes: dict) -> Path:
    data = yaml.safe_load((REPO / "configs" / name).read_text())
    if data["data"]["source"]["kind"] == "csv":
        data["data"]["source"]["path"] = str(REPO / "data" / "ai4i2020.csv")
    data |= changes
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_anomaly_detector_with_supervised_companion(tmp_path):
    home = TidemillHome.resolve(tmp_path / "home")
    cfg = _variant(
        tmp_path,
        "ai4i_anomaly.yaml",
        {
            "tuning": {"method": "random", "n_trials": 2, "metric": "pr_auc"},
            "cv": {"method": "stratified", "folds": 2},
            "mlflow": {"experiment": "it-anomaly", "registered_model_name": "it-anomaly"},
        },
    )
    result = run_pipeline(cfg, home, run_key="anomaly")
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    mv = client.get_model_version("it-anomaly", "1")
    assert mv.tags["tidemill.task"] == "anomaly"
    m = client.get_run(mv.run_id).data.metrics
    assert 0.6 < m["test_roc_auc"] <= 1 and 0 < m["test_anomaly_rate"] < 0.2
    # the supervised companion, trained on the labels, ranks failures far better
    assert m["companion_test_pr_auc"] > m["test_pr_auc"]
    plots = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    assert {"plots/score_histogram.png", "plots/pr_curve.png"} <= plots
    assert result["candidates"][0]["test"]["f1"] > 0  # flags at the best-F1 threshold
    import mlflow

    use_store(home.mlflow_uri)  # not mlflow.set_tracking_uri: it exports the URI to later tests
    model = mlflow.pyfunc.load_model("models:/it-anomaly@champion")
    raw = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig", nrows=50)
    out = model.predict(raw[["Type", "Air temperature", "Process temperature",
                             "Rotational speed", "Torque", "Tool wear"]])  # fmt: skip
    assert list(out.columns) == ["prediction", "score"]
    assert set(out["prediction"]) <= {0, 1}


def test_regression_on_sklearn_diabetes(tmp_path):
    home = TidemillHome.resolve(tmp_path / "home")
    cfg = _variant(
        tmp_path,
        "diabetes_regression.yaml",
        {"mlflow": {"experiment": "it-diabetes", "registered_model_name": "it-diabetes"}},
    )
    result = run_pipeline(cfg, home, run_key="reg", algorithms=["ridge", "lightgbm"], n_trials=2)
    assert result["registered"]["algorithm"] in {"ridge", "lightgbm"}
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    mv = client.get_model_version("it-diabetes", "1")
    m = client.get_run(mv.run_id).data.metrics
    assert 0.2 < m["test_r2"] < 1 and 30 < m["test_rmse"] < 80
    for key in ("test_mae", "test_mape", "test_explained_variance"):
        assert key in m
    plots = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
    assert {"plots/residuals.png", "plots/pred.png"} <= plots


def test_multiclass_on_sklearn_wine(tmp_path):
    """Three classes: arg-max predictions, macro metrics, one probability column per class."""
    home = TidemillHome.resolve(tmp_path / "home")
    config = {
        "name": "wine",
        "task": "classification",
        "data": {"source": {"kind": "sklearn", "name": "wine"}, "target_column": "target"},
        "feature_selection": {"method": "statistical", "n_features": 6},
        "algorithms": {"naive_bayes": {}, "random_forest": {"params": {"n_estimators": 30}}},
        "tuning": {"metric": "balanced_accuracy"},
        "mlflow": {"experiment": "it-wine", "registered_model_name": "it-wine"},
    }
    path = tmp_path / "wine.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_pipeline(path, home, run_key="wine")
    best = next(
        c for c in result["candidates"] if c["algorithm"] == result["registered"]["algorithm"]
    )
    assert best["test"]["balanced_accuracy"] > 0.8 and best["test"]["roc_auc"] > 0.9
    import mlflow
    from sklearn.datasets import load_wine

    use_store(home.mlflow_uri)
    model = mlflow.pyfunc.load_model("models:/it-wine@champion")
    wine = load_wine(as_frame=True).frame
    out = model.predict(wine.drop(columns="target").head(20))
    assert list(out.columns) == ["prediction", "prediction_proba", "proba_0", "proba_1", "proba_2"]
    assert (out[["proba_0", "proba_1", "proba_2"]].max(axis=1) == out["prediction_proba"]).all()
    assert (out["prediction"] == wine["target"].head(20)).mean() > 0.8
