"""Where a drift check's reports go: files, MLflow and the Evidently workspace.

- Files: ``<dir>/<report>.html`` and ``<report>.json`` (Evidently metrics) for every snapshot,
  plus ``decision.json`` (``DriftResult.summary()``).
- MLflow: one run per check in the monitoring experiment: the scores and decision as metrics,
  the thresholds as params, the report folder as artifacts under ``reports/``.
- Evidently workspace: ``<store>/reports/evidently-workspace`` in the artifact store
  (``workspace_url``; the home by default, ``s3://...`` on Kubernetes) with one project per
  registered model, every snapshot added as a run; browse it with
  ``evidently ui --workspace <path>`` (a local copy of it, when the store is remote).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from pathlib import Path

from evidently.sdk.models import PanelMetric
from evidently.sdk.panels import line_plot_panel
from evidently.ui.workspace import Project, Workspace
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from monitoring.drift import DriftResult
from pipelines import artifact_store
from pipelines.settings import Settings

MONITORING_EXPERIMENT = "tidemill-monitoring"
WORKSPACE_DIRNAME = "evidently-workspace"
SNAPSHOTS = "snapshots"  # Evidently's folder of a project's runs


def workspace_url(settings: Settings) -> str:
    """The Evidently workspace in the artifact store: ``<store>/reports/evidently-workspace``."""
    return settings.store.url("reports", WORKSPACE_DIRNAME)


def save_reports(result: DriftResult, out_dir: Path) -> dict[str, Path]:
    """Write every snapshot as HTML + JSON and the decision as ``decision.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, snapshot in result.snapshots.items():
        html, js = out_dir / f"{name}.html", out_dir / f"{name}.json"
        snapshot.save_html(str(html))
        snapshot.save_json(str(js))
        written[f"{name}.html"], written[f"{name}.json"] = html, js
    decision = out_dir / "decision.json"
    decision.write_text(json.dumps(result.summary(), indent=2, default=float))
    written["decision.json"] = decision
    return written


def mlflow_metrics(result: DriftResult) -> dict[str, float]:
    """The numbers of a check as MLflow metric keys."""
    metrics = {
        "drift_detected": float(result.detected),
        "drift_share": result.drift_share,
        **{f"drift_score.{_key(c)}": s for c, s in result.column_scores.items()},
    }
    if result.prediction_drift is not None:
        metrics["prediction_drift"] = result.prediction_drift
    for variant, q in result.quality.items():
        v = _key(variant)
        metrics |= {f"n_actuals.{v}": q.n_actuals, f"mae.{v}": q.mae, f"coverage.{v}": q.coverage}
    if result.champion_val_mae is not None:
        metrics["champion_val_mae"] = result.champion_val_mae
    for variant, numbers in result.labelled.items():
        metrics |= {f"quality.{_key(variant)}.{k}": v for k, v in numbers.items()}
    return {k: float(v) for k, v in metrics.items() if v == v}  # NaN cannot be logged


def log_to_mlflow(
    result: DriftResult,
    report_dir: Path,
    tracking_uri: str,
    *,
    experiment: str = MONITORING_EXPERIMENT,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
) -> str:
    """Log a check as one finished MLflow run of ``experiment``; returns the run id.

    ``artifact_location`` is used only when the experiment is created (pass the home's
    ``artifacts_dir.as_uri()`` with the home's SQLite store, as training does).
    """
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        with contextlib.suppress(MlflowException):  # created concurrently by another check
            client.create_experiment(experiment, artifact_location=artifact_location)
        exp = client.get_experiment_by_name(experiment)
    run_tags = {
        "tidemill.drift.detected": str(result.detected).lower(),
        "tidemill.drift.reason": result.reason[:5000],
        **(tags or {}),
    }
    run = client.create_run(exp.experiment_id, tags=run_tags, run_name=run_name)
    run_id = run.info.run_id
    try:
        params = {f"drift.{k}": str(v) for k, v in result.config.as_dict().items()}
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, _now_ms(), 0) for k, v in mlflow_metrics(result).items()],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in run_tags.items()],
        )
        client.log_artifacts(run_id, str(report_dir), artifact_path="reports")
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id


def add_to_workspace(result: DriftResult, url: str, project_name: str) -> dict[str, str]:
    """Add every snapshot to the project (created with a dashboard if new) of the workspace at
    ``url``; name -> run id.

    A local workspace is written in place. A remote one (``s3://...``) is worked on in a
    temporary copy of everything but the runs (the projects' metadata), and what changed or is
    new (the runs, a new project) is written back, so the drift pod keeps nothing locally.
    """
    if artifact_store.is_local(url):
        return _add_runs(Workspace.create(str(url)), result, project_name)
    with tempfile.TemporaryDirectory(prefix="tidemill-workspace-") as tmp:
        local = Path(tmp)
        fetched: dict[str, bytes] = {}
        for name in artifact_store.list_files(url):
            if f"/{SNAPSHOTS}/" in f"/{name}":
                continue
            fetched[name] = artifact_store.read_bytes(artifact_store.join(url, name))
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(fetched[name])
        runs = _add_runs(Workspace.create(str(local)), result, project_name)
        # runs first: a project's metadata never goes up before what it would list
        written = sorted((p for p in local.rglob("*") if p.is_file()),
                         key=lambda p: SNAPSHOTS not in p.parts)
        for path in written:
            name = path.relative_to(local).as_posix()
            data = path.read_bytes()
            if fetched.get(name) != data:
                artifact_store.write_bytes(artifact_store.join(url, name), data)
    return runs


def _add_runs(workspace: Workspace, result: DriftResult, project_name: str) -> dict[str, str]:
    project = _project(workspace, project_name)
    return {
        name: str(workspace.add_run(project.id, snapshot, name=name).id)
        for name, snapshot in result.snapshots.items()
    }


def _project(workspace: Workspace, name: str) -> Project:
    found = workspace.search_project(name)
    if found:
        return found[0]
    project = workspace.create_project(name, description=f"Tidemill drift monitoring of {name}")
    panels = {
        "Share of drifted columns": ("DriftedColumnsCount", {"value_type": "share"}),
        "Interval coverage": ("MeanValue", {"column": "in_interval"}),
        "Live MAE": ("MAE", {"value_type": "mean"}),
    }
    for title, (metric, labels) in panels.items():
        panel = line_plot_panel(title, [PanelMetric(metric=metric, metric_labels=labels)])
        project.dashboard.add_panel(panel, tab="Drift")
    return project


def _key(name: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", name)


def _now_ms() -> int:
    return int(time.time() * 1000)
