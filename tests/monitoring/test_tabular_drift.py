"""Drift of a tabular model: a classifier trained on an AI4I slice with a real MLflow store,
its answers written to the prediction log by serving's own writer (serving environment), and
the Evidently check over features (numbers and the categorical ``Type``) and answers, and
the quality report once labels came back for enough records."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from monitoring.tabular_drift import tabular_drift_monitor
from pipelines import artifact_store
from pipelines.home import TidemillHome
from pipelines.registry import use_store
from pipelines.settings import Settings
from pipelines.tabular.workflow import run_pipeline
from serving.prediction_log.reader import record_labels
from serving.prediction_log.schema import engine_for

REPO = Path(__file__).resolve().parents[2]
SERVING_PY = REPO / ".venv" / "serving" / "bin" / "python"
NAME = "drift-ai4i"

# serving's writer logs records the way the router does after answering them
LOG_RECORDS = textwrap.dedent("""
    import json, sys, time
    import mlflow.pyfunc, pandas as pd
    from pipelines.registry import use_store
    from serving.prediction_log.writer import close_all, writer_for
    from serving.tabular_model import TabularLogEntry
    uri, log_url, name, frame_json, prefix = sys.argv[1:6]
    use_store(uri)
    bundle = mlflow.pyfunc.load_model(f"models:/{name}/1").unwrap_python_model().bundle
    frame = pd.read_json(frame_json, orient="split")
    writer = writer_for(log_url)
    for start in range(0, len(frame), 20):
        part = frame.iloc[start:start + 20].reset_index(drop=True)
        writer.submit(TabularLogEntry(f"{prefix}-{start}", time.time(), None, "champion",
                                      name, "1", part, bundle.predict(part)))
    close_all()
""")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TidemillHome, Path]:
    root = tmp_path_factory.mktemp("tabular-drift")
    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"]["source"]["path"] = str(REPO / "data" / "ai4i2020.csv")
    data["data"]["rows"] = {"start": 0, "stop": 2000}
    data["algorithms"] = {"logistic_regression": {"params": {"C": 1.0}}}
    data["tuning"] |= {"n_trials": 1}
    data["cv"] = {"method": "stratified", "folds": 2}
    data["mlflow"] = {"experiment": NAME, "registered_model_name": NAME}
    config = root / "ai4i.yaml"
    config.write_text(yaml.safe_dump(data))
    home = TidemillHome.resolve(root / "home")
    run_pipeline(config, home, run_key="drift")
    return home, config


def _log(home: TidemillHome, frame: pd.DataFrame, prefix: str) -> None:
    settings = Settings.resolve(home)
    subprocess.run(
        [str(SERVING_PY), "-c", LOG_RECORDS, settings.mlflow_tracking_uri,
         settings.prediction_log_url, NAME, frame.to_json(orient="split"), prefix],
        check=True, cwd=REPO, capture_output=True, text=True, timeout=300,
    )


FEATURES = ["Type", "Air temperature", "Process temperature", "Rotational speed", "Torque",
            "Tool wear"]


def test_too_few_records_are_not_judged(trained) -> None:
    home, config = trained
    outcome = tabular_drift_monitor(config, home, min_records=30)
    assert outcome == {"detected": False, "reason": outcome["reason"]}
    reason = outcome["reason"]
    assert reason.startswith(f"0 records of '{NAME}'") and "needs 30" in reason


def test_unchanged_then_shifted_records(trained) -> None:
    home, config = trained
    # records like the training rows (AI4I's temperatures wander over the file: rows far from
    # the training slice drift for real)
    rows = pd.read_csv(REPO / "data" / "ai4i2020.csv", nrows=2000).sample(600, random_state=3)
    _log(home, rows[FEATURES], "same")
    calm = tabular_drift_monitor(config, home, min_records=100)
    assert calm["detected"] is False, calm
    assert calm["records"] == 600 and calm["answer"] == "prediction_proba"
    assert set(calm["column_scores"]) == set(FEATURES)

    shifted = rows[FEATURES].assign(**{"Type": "H", "Torque": rows["Torque"] * 1.6,
                                      "Air temperature": rows["Air temperature"] + 6})
    _log(home, shifted, "shifted")
    alarm = tabular_drift_monitor(config, home, min_records=100)
    assert alarm["detected"] is True and alarm["records"] == 1200
    assert {"Type", "Torque", "Air temperature"} <= set(alarm["drifted_columns"])
    assert alarm["prediction_drift"] > calm["prediction_drift"]
    decision = json.loads(artifact_store.read_text(
        artifact_store.join(alarm["report_dir"], "decision.json")))
    assert decision["detected"] is True
    uri = Settings.resolve(home).mlflow_tracking_uri
    run = MlflowClient(uri).get_run(alarm["mlflow_run_id"])
    assert run.data.tags["tidemill.task"] == "classification"
    assert run.data.tags["tidemill.drift.detected"] == "true"


def test_quality_reports_once_labels_come_back(trained) -> None:
    home, config = trained
    settings = Settings.resolve(home)
    raw = pd.read_csv(REPO / "data" / "ai4i2020.csv", nrows=2000)
    failed = raw["Machine failure"] == 1
    rows = pd.concat([raw[failed].head(12), raw[~failed].sample(68, random_state=5)])
    rows = rows.sample(frac=1, random_state=6).reset_index(drop=True)  # 80 records, 12 failures
    _log(home, rows[FEATURES], "labelled")  # requests labelled-0, -20, -40, -60 of 20 records
    engine = engine_for(settings.prediction_log_url)
    y = rows["Machine failure"].to_numpy()

    def feed(positions: range) -> None:
        for i in positions:  # the store call behind the control API's POST /feedback
            record_labels(engine, f"labelled-{i - i % 20}", [(i % 20, float(y[i]))])

    feed(range(10))
    few = tabular_drift_monitor(config, home, min_records=100, min_labels=30)
    assert few["labelled"] == {"champion": {"labels": 10.0}}
    assert ("quality of champion not reported: 10 labelled records, at least 30 needed"
            in few["notes"])
    assert "quality_champion" not in few["reports"]

    feed(range(10, 80))
    checked = tabular_drift_monitor(config, home, min_records=100, min_labels=30)
    assert "quality_champion" in checked["reports"]
    # by hand: the champion's answers on the same rows against the labels
    use_store(settings.mlflow_tracking_uri)
    bundle = mlflow.pyfunc.load_model(f"models:/{NAME}/1").unwrap_python_model().bundle
    answers = bundle.predict(rows[FEATURES])
    want = {"labels": 80.0, "accuracy": accuracy_score(y, answers["prediction"]),
            "precision": precision_score(y, answers["prediction"]),
            "recall": recall_score(y, answers["prediction"]),
            "f1": f1_score(y, answers["prediction"]),
            "roc_auc": roc_auc_score(y, answers["prediction_proba"]),
            "log_loss": log_loss(y, answers["prediction_proba"])}
    assert checked["labelled"]["champion"] == pytest.approx(want, rel=1e-6)
    for name in ("quality_champion.html", "quality_champion.json"):
        assert artifact_store.exists(artifact_store.join(checked["report_dir"], name))
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(checked["mlflow_run_id"])
    assert run.data.metrics["quality.champion.f1"] == pytest.approx(want["f1"])
    artifacts = {f.path for f in MlflowClient(settings.mlflow_tracking_uri).list_artifacts(
        checked["mlflow_run_id"], "reports")}
    assert "reports/quality_champion.html" in artifacts
    gauges = artifact_store.read_text(checked["metrics_url"])
    assert (f'tidemill_live_quality{{metric="accuracy",model="{NAME}",variant="champion"}} '
            f'{want["accuracy"]}') in gauges
    assert f'tidemill_live_labels{{model="{NAME}",variant="champion"}} 80.0' in gauges
