"""Drift results as Prometheus metrics, through text files in the artifact store.

The drift DAG calls :func:`write_drift_metrics` after each check; it writes
``<store>/metrics/drift-<model>.prom`` (``metrics_url``) atomically in the Prometheus text
format (one object per registered model, replaced on every check, so a new champion version
replaces the old series). The store is the one of ``pipelines.settings`` (the Tidemill home by
default, ``s3://...`` on Kubernetes), so the drift pod keeps nothing and every pod can read it:

- the serving control API re-exports the folder on its ``/metrics``
  (``serving.textfile_metrics.TextfileCollector``); every scrape re-reads it;
- or, with a local store, node_exporter's textfile collector points at ``<home>/metrics``.

Metrics (gauges): ``tidemill_drift_share{model,version}``, ``tidemill_drift_detected{model,
version}`` (0/1), ``tidemill_drift_score{model,version,column}`` (per-column score; column
``prediction`` is the served ``yhat`` against the reference target),
``tidemill_interval_coverage{model,variant}``, ``tidemill_live_abs_error{model,variant}``
(live MAE), ``tidemill_live_actuals{model,variant}``, ``tidemill_validation_mae{model,version}``
(the champion's ``val_mae``) and ``tidemill_drift_check_timestamp_seconds{model,version}``;
tabular models with labels fed back: ``tidemill_live_labels{model,variant}`` and
``tidemill_live_quality{model,variant,metric}`` (accuracy, precision, recall, f1, roc_auc,
log_loss; mae, rmse, r2).
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from pipelines import artifact_store

if TYPE_CHECKING:
    from monitoring.drift import DriftResult
    from pipelines.settings import Settings

def metrics_url(settings: Settings) -> str:
    """The folder of job metrics in the artifact store: ``<store>/metrics``."""
    return settings.job_metrics_url


def metrics_file(folder: str, model: str) -> str:
    return artifact_store.join(folder, f"drift-{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}.prom")


def write_drift_metrics(
    result: DriftResult,
    folder: str,
    *,
    model: str,
    version: str,
    timestamp: float | None = None,
) -> str:
    """Write the metrics of one check for ``model`` (champion ``version``) into ``folder`` (a
    store URL); returns the object's URL."""
    registry = CollectorRegistry()
    base = ("model", "version")

    def gauge(name: str, doc: str, labels: tuple[str, ...] = base) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    gauge("tidemill_drift_share", "Share of monitored columns that drifted").labels(
        model, version
    ).set(result.drift_share)
    gauge("tidemill_drift_detected", "1 when the last drift check decided drift").labels(
        model, version
    ).set(float(result.detected))
    gauge("tidemill_drift_check_timestamp_seconds", "Unix time of the last drift check").labels(
        model, version
    ).set(time.time() if timestamp is None else timestamp)
    scores = gauge(
        "tidemill_drift_score",
        f"Per-column drift score ({result.config.method}; drift at >= "
        f"{result.config.column_threshold:g})",
        (*base, "column"),
    )
    for column, score in result.column_scores.items():
        scores.labels(model, version, column).set(score)
    if result.prediction_drift is not None:
        scores.labels(model, version, "prediction").set(result.prediction_drift)
    if result.champion_val_mae is not None:
        gauge("tidemill_validation_mae", "Validation MAE of the champion").labels(
            model, version
        ).set(result.champion_val_mae)
    per_variant = ("model", "variant")
    coverage = gauge(
        "tidemill_interval_coverage",
        "Share of actuals inside the prediction interval",
        per_variant,
    )
    error = gauge(
        "tidemill_live_abs_error", "Mean absolute error on logged predictions", per_variant
    )
    actuals = gauge("tidemill_live_actuals", "Actuals behind the live error", per_variant)
    for variant, q in result.quality.items():
        actuals.labels(model, variant).set(q.n_actuals)
        error.labels(model, variant).set(q.mae)
        if not math.isnan(q.coverage):
            coverage.labels(model, variant).set(q.coverage)
    if result.labelled:
        labels = gauge("tidemill_live_labels", "Labelled records behind the live quality",
                       per_variant)
        quality = gauge("tidemill_live_quality", "Quality on labelled logged records",
                        (*per_variant, "metric"))
        for variant, numbers in result.labelled.items():
            for metric, value in numbers.items():
                if metric == "labels":
                    labels.labels(model, variant).set(value)
                else:
                    quality.labels(model, variant, metric).set(value)
    return artifact_store.write_bytes(metrics_file(folder, model), generate_latest(registry))
