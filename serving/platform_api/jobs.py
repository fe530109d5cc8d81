"""Training jobs: an experiment config written beside the dataset, a ``tabular_training`` DAG
run started through Airflow's REST API, and the run's state read back (with the MLflow runs
and registered version it produced)."""

from __future__ import annotations

from typing import Any

import yaml
from mlflow import MlflowClient

from pipelines.config import ConfigError
from pipelines.tabular.config import parse_tabular_config
from pipelines.tabular.data import SPLIT_COLUMN
from serving.platform_api.airflow import AirflowClient
from serving.platform_api.datasets import DatasetError

DAG_ID = "tabular_training"
STATES = {"queued": "pending", "running": "running", "success": "completed", "failed": "failed"}
DONE_TASK_STATES = {"success", "skipped", "upstream_failed", "failed", "removed"}


def experiment(dataset: dict[str, Any], body: Any, job_id: str) -> dict[str, Any]:
    """The tabular experiment config of a train request on ``dataset`` (validated: a bad
    algorithm, metric or parameter is a DatasetError naming the field)."""
    target = body.target_column or dataset["target_column"]
    columns = [c["name"] for c in dataset["profile"]["columns"]]
    if target is not None and target not in columns:
        raise DatasetError(f"target_column: {target!r} is not a column of dataset "
                           f"{dataset['id']}; columns: {columns}")  # fmt: skip
    split = body.split.model_dump()
    id_columns = list(body.id_columns)
    if SPLIT_COLUMN in columns:  # a split version: the same parameters give the same parts
        split = {**split, **dataset["params"].get("split", {})}
        id_columns.append(SPLIT_COLUMN)
    spaces = body.model_dump(mode="json", exclude_none=True)["search_spaces"]
    algorithms = {
        name: {"params": body.hyperparameters.get(name, {}), "search_space": spaces.get(name, {})}
        for name in body.algorithms
    }  # fmt: skip
    unknown = sorted(set(body.hyperparameters) - set(body.algorithms))
    if unknown:
        raise DatasetError(f"hyperparameters: {unknown} are not among algorithms "
                           f"{body.algorithms}")  # fmt: skip
    name = body.registered_model_name or f"tidemill-{dataset['name']}-{body.task}"
    config = {
        "name": f"{dataset['name']}-{job_id}",
        "task": body.task,
        "data": {
            "source": {"kind": "parquet", "path": dataset["url"]},
            "target_column": target,
            "id_columns": id_columns,
            "time_column": body.time_column,
        },
        "split": split,
        "preprocess": {"scaler": body.scaling},
        "feature_selection": body.feature_selection.model_dump(),
        "cv": {"method": body.cv_method, "folds": body.cv_folds},
        "algorithms": algorithms,
        "tuning": {"method": body.tuning_method, "n_trials": body.n_trials, "metric": body.metric,
                   "early_stopping_rounds": body.early_stopping_rounds},
        "mlflow": {"experiment": f"platform-{dataset['name']}", "registered_model_name": name},
    }  # fmt: skip
    try:
        parse_tabular_config(config, origin="train request")
    except ConfigError as exc:
        raise DatasetError(str(exc)) from exc
    return config


def config_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)


def refresh(job: dict[str, Any], airflow: AirflowClient, tracking_uri: str) -> dict[str, Any]:
    """The job's columns that changed since Airflow's run state was last read."""
    run = airflow.dag_run(job["dag_id"], job["dag_run_id"])
    status = STATES.get(run["state"], "running")
    tis = airflow.task_instances(job["dag_id"], job["dag_run_id"])
    done = [t for t in tis if t.get("state") in DONE_TASK_STATES]
    progress = {
        "tasks_done": len(done),
        "tasks_total": len(tis),
        "fraction": round(len(done) / len(tis), 3) if tis else 0.0,
        "running": sorted({t["task_id"] for t in tis if t.get("state") == "running"}),
        "airflow_state": run["state"],
    }
    if status == "completed":
        progress["fraction"] = 1.0
    update: dict[str, Any] = {
        "status": status,
        "progress": progress,
        "started_at": _time(run.get("start_date")),
        "finished_at": _time(run.get("end_date")) if status in ("completed", "failed") else None,
    }
    if status == "failed":
        failed = [t for t in tis if t.get("state") == "failed"]
        update["error"] = (
            "; ".join(airflow.failure(job["dag_id"], job["dag_run_id"], t) for t in failed[:3])
            or f"DAG run {job['dag_run_id']} failed"
        )
    if status == "completed":
        update["result"] = outcome(tracking_uri, job["dag_run_id"])
    return update


def _time(value: str | None) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def outcome(tracking_uri: str, pipeline_run: str) -> dict[str, Any]:
    """The registered version, and each candidate's MLflow run with its evaluation and its
    training history (per-iteration losses of boosted models), of one pipeline run."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    versions = client.search_model_versions(f"tags.`tidemill.pipeline_run` = '{pipeline_run}'")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`tidemill.pipeline_run` = '{pipeline_run}'",
    )
    candidates = []
    for run in runs:
        metrics = run.data.metrics
        history = {
            key: [m.value for m in client.get_metric_history(run.info.run_id, key)]
            for key in metrics if key.startswith("loss_")
        }  # fmt: skip
        candidates.append({
            "algorithm": run.data.tags.get("tidemill.algorithm"),
            "run_id": run.info.run_id,
            "params": {k[3:]: v for k, v in run.data.params.items() if k.startswith("hp.")},
            "validation": {k[4:]: v for k, v in metrics.items() if k.startswith("val_")},
            "test": {k[5:]: v for k, v in metrics.items() if k.startswith("test_")},
            "cv_best_value": metrics.get("cv_best_value"),
            "history": history,
        })  # fmt: skip
    model = None
    if versions:
        mv = versions[0]
        model = {
            "name": mv.name,
            "version": str(mv.version),
            "run_id": mv.run_id,
            "algorithm": mv.tags.get("tidemill.algorithm"),
            "aliases": sorted(client.get_model_version(mv.name, mv.version).aliases),
        }
    best = next((c for c in candidates if model and c["run_id"] == model["run_id"]), None)
    return {"model": model, "evaluation": best, "candidates": candidates}
