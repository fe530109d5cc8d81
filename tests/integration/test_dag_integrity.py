"""Every DAG file parses without import errors, quickly, and imports nothing heavy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "mlflow",
    "pandas",
    "tensorflow",
    "xgboost",
    "statsmodels",
    "optuna",
    "evidently",
    "sklearn",
)
# the only pipelines modules a DAG file may import at parse time: names and paths, no imports
LIGHT_PIPELINES = ["pipelines", "pipelines.feature_sources", "pipelines.project_dir"]


def _parse_in_fresh_process() -> dict:
    code = textwrap.dedent(f"""
        import json, sys, time
        import airflow.sdk  # the DAG's own import; not counted as parse cost
        from airflow.dag_processing.dagbag import DagBag
        before = set(sys.modules)
        t = time.perf_counter()
        bag = DagBag(dag_folder={str(REPO / "dags")!r})
        seconds = time.perf_counter() - t
        new = set(sys.modules) - before
        heavy = sorted({{m.split('.')[0] for m in new}} & set({HEAVY!r}))
        ours = sorted(m for m in new if m.split('.')[0] == 'pipelines')
        print(json.dumps({{"dags": sorted(bag.dag_ids), "errors": bag.import_errors,
                          "seconds": seconds, "heavy": heavy, "pipelines": ours}}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
            "PATH": "/usr/bin:/bin",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dags_parse_fast_without_heavy_imports():
    result = _parse_in_fresh_process()
    assert result["errors"] == {}
    assert result["dags"] == [
        "drift_monitor",
        "feature_materialize",
        "forecast_training",
        "promote_challenger",
        "tabular_drift_monitor",
        "tabular_promotion",
        "tabular_training",
    ]
    assert result["heavy"] == [], f"parsing imported {result['heavy']}"
    assert set(result["pipelines"]) <= set(LIGHT_PIPELINES), result["pipelines"]
    print(f"DAG folder parse time: {result['seconds']:.3f}s")
    assert result["seconds"] < 5.0


def test_forecast_training_shape():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["forecast_training"]
    assert dag.doc_md and "forecast_training" in dag.doc_md
    assert {"tidemill", "training"} <= set(dag.tags)
    assert {"config", "algorithms", "n_trials", "horizon"} <= set(dag.params.keys())
    ids = set(dag.task_ids)
    assert {"ingest", "preprocess", "tune", "train", "select", "register"} <= ids
    assert dag.get_task("tune").__class__.__name__.endswith("MappedOperator")
    assert dag.get_task("train").__class__.__name__.endswith("MappedOperator")
    assert all(t.retries >= 1 for t in dag.tasks)
    outlets = dag.get_task("register").outlets
    assert [o.name for o in outlets] == ["tidemill_registered_model"]


def test_monitoring_and_promotion_wiring():
    from airflow.dag_processing.dagbag import DagBag

    dags = DagBag(dag_folder=str(REPO / "dags")).dags
    drift = dags["drift_monitor"]
    assert drift.timetable.expression == "0 0 * * *" and drift.doc_md
    assert {"check", "drifted", "retrain_conf", "trigger_retraining", "watch_champion"} <= set(
        drift.task_ids)
    assert drift.get_task("trigger_retraining").trigger_dag_id == "forecast_training"
    assert drift.get_task("trigger_retraining").upstream_task_ids == {"retrain_conf"}
    promote = dags["promote_challenger"]
    assert [a.name for a in promote.timetable.asset_condition.objects] == [
        "tidemill_registered_model"
    ]
    assert set(promote.task_ids) == {"target", "evaluate", "apply"}
    tabular = dags["tabular_drift_monitor"]
    assert tabular.timetable.expression == "0 0 * * *" and tabular.doc_md
    assert tabular.get_task("trigger_retraining").trigger_dag_id == "tabular_training"
    assert tabular.get_task("trigger_retraining").upstream_task_ids == {"retrain_conf"}
    assert {"config", "since_hours", "min_records", "min_labels", "drift"} <= set(
        tabular.params.keys())
    tabular_promote = dags["tabular_promotion"]
    assert [a.name for a in tabular_promote.timetable.asset_condition.objects] == [
        "tidemill_registered_tabular_model"
    ]
    assert set(tabular_promote.task_ids) == {"target", "evaluate", "apply"}
    assert {"tidemill", "promotion", "tabular"} <= set(tabular_promote.tags)
    assert tabular_promote.doc_md and {"model_name", "version", "alpha", "bootstrap"} <= set(
        tabular_promote.params.keys())


def test_tabular_training_shape():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["tabular_training"]
    assert dag.doc_md and "tabular_training" in dag.doc_md
    assert {"tidemill", "training", "tabular"} <= set(dag.tags)
    assert {"config", "algorithms", "n_trials", "reason"} <= set(dag.params.keys())
    assert {"ingest", "prepare", "tune", "train", "select", "register"} <= set(dag.task_ids)
    assert dag.get_task("tune").__class__.__name__.endswith("MappedOperator")
    assert dag.get_task("train").__class__.__name__.endswith("MappedOperator")
    assert all(t.retries >= 1 for t in dag.tasks)
    # its own Asset: forecasting's promotion (on tidemill_registered_model) must not fire
    outlets = dag.get_task("register").outlets
    assert [o.name for o in outlets] == ["tidemill_registered_tabular_model"]


def test_retry_delay_is_the_dags_own_unless_the_environment_sets_one(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tidemill.dag_support import RETRY_DELAY_ENV, retry_args

    def delays(dag_id: str) -> set[timedelta]:
        dag = DagBag(dag_folder=str(REPO / "dags")).dags[dag_id]
        return {t.retry_delay for t in dag.tasks}

    monkeypatch.delenv(RETRY_DELAY_ENV, raising=False)
    assert delays("forecast_training") == {timedelta(seconds=20)}
    assert delays("promote_challenger") == {timedelta(seconds=30)}
    monkeypatch.setenv(RETRY_DELAY_ENV, "1.5")
    assert delays("forecast_training") == delays("promote_challenger") == {timedelta(seconds=1.5)}
    assert retry_args(2, 20) == {"retries": 2, "retry_delay": timedelta(seconds=1.5)}
    for bad in ("soon", "-1"):
        monkeypatch.setenv(RETRY_DELAY_ENV, bad)
        with pytest.raises(ValueError, match=f"{RETRY_DELAY_ENV}='{bad}'"):
            retry_args(2, 20)
