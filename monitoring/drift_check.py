"""One drift check end to end: Evidently reports, MLflow, workspace, Prometheus gauges; all
in the artifact store and MLflow (URLs), nothing kept locally.

This is what the ``drift_monitor`` DAG calls once it has the champion's reference snapshot,
the current window and the prediction log (see :mod:`monitoring.lineage` for the reference).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitoring.drift import DriftConfig, DriftResult, check_drift
from monitoring.drift_metrics import metrics_url, write_drift_metrics
from monitoring.drift_reports import (
    MONITORING_EXPERIMENT,
    add_to_workspace,
    log_to_mlflow,
    save_reports,
    workspace_url,
)
from pipelines import artifact_store
from pipelines.home import TidemillHome
from pipelines.settings import Settings

if TYPE_CHECKING:
    from monitoring.tabular_quality import LabelledQuality


@dataclass
class DriftCheckOutcome:
    """A finished check: the result and where everything went."""

    result: DriftResult
    report_dir: str  # URL in the artifact store
    mlflow_run_id: str
    workspace_runs: dict[str, str]
    metrics_url: str  # the gauges' object in the artifact store

    def summary(self) -> dict[str, Any]:
        """JSON-ready (XCom): the decision, scores and locations."""
        return self.result.summary() | {
            "report_dir": self.report_dir,
            "mlflow_run_id": self.mlflow_run_id,
            "workspace_runs": dict(self.workspace_runs),
            "metrics_url": self.metrics_url,
        }


def run_drift_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    *,
    home: TidemillHome,
    model: str,
    version: str,
    champion_val_mae: float | None = None,
    config: DriftConfig | None = None,
    tracking_uri: str | None = None,
    experiment: str = MONITORING_EXPERIMENT,
    tags: dict[str, str] | None = None,
    now: datetime | None = None,
    columns: Sequence[str] | None = None,
    labelled: LabelledQuality | None = None,
) -> DriftCheckOutcome:
    """Check ``model`` (champion ``version``) and publish the outcome.

    Reports go to ``<store>/reports/<model>/<UTC time>/`` in the artifact store (the home by
    default), MLflow to ``tracking_uri`` (default: the settings' tracking URI), snapshots to
    the project ``model`` of the Evidently workspace ``<store>/reports/evidently-workspace``,
    gauges to ``<store>/metrics/drift-<model>.prom``.
    ``columns``: the data-drift columns (default: ``check_drift``'s). ``labelled``: a tabular
    model's quality reports and numbers on labelled records, published with the check.
    """
    now = now or datetime.now(UTC)
    result = check_drift(
        reference,
        current,
        predictions,
        champion_val_mae=champion_val_mae,
        config=config,
        columns=columns,
        metadata={"model": model, "version": version},
        timestamp=now.replace(tzinfo=None),
    )
    if labelled is not None:
        result.snapshots |= labelled.snapshots
        result.labelled = labelled.metrics
        result.notes += labelled.notes
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    settings = Settings.resolve(home)
    report_url = settings.store.url("reports", _safe(model), stamp)
    uri = tracking_uri or settings.mlflow_tracking_uri
    with tempfile.TemporaryDirectory(prefix="tidemill-reports-") as scratch:
        save_reports(result, Path(scratch))
        run_id = log_to_mlflow(
            result,
            Path(scratch),
            uri,
            experiment=experiment,
            artifact_location=home.artifacts_dir.as_uri() if uri == home.mlflow_uri else None,
            tags={"tidemill.model": model, "tidemill.model_version": version, **(tags or {})},
            run_name=f"drift-{_safe(model)}-v{version}-{stamp}",
        )
        artifact_store.put_dir(scratch, report_url)
    workspace_runs = add_to_workspace(result, workspace_url(settings), model)
    gauges = write_drift_metrics(
        result, metrics_url(settings), model=model, version=version, timestamp=now.timestamp()
    )
    return DriftCheckOutcome(result, report_url, run_id, workspace_runs, gauges)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
