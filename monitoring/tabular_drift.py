"""Drift of a tabular model (classification, regression, anomaly detection).

The reference is the champion's training snapshot (MLflow lineage, as for forecasters) and the
champion's own answers on it; the current data are the feature records the model answered,
from the prediction log. Evidently compares every feature (numbers and categories, with the
Jensen-Shannon distance) and the answers (``prediction_proba`` of classifiers, ``prediction``
of regressors, ``score`` of anomaly detectors); reports, MLflow run, workspace and Prometheus
gauges are the forecasting check's (``monitoring.drift_check``). Records whose labels came back
through ``POST /feedback`` add classification or regression quality reports
(``monitoring.tabular_quality``) to the same check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException

from monitoring.drift import TARGET, DriftConfig
from monitoring.drift_check import run_drift_check
from monitoring.lineage import champion_lineage
from monitoring.tabular_quality import labelled_quality
from pipelines import registry
from pipelines.home import TidemillHome
from pipelines.settings import Settings
from pipelines.tabular.config import load_tabular_config
from serving.prediction_log.reader import tabular_records
from serving.prediction_log.schema import engine_for

# Evidently's default for mixed columns: distance 0..1, drift from 0.1
DEFAULTS = {"method": "jensenshannon", "column_threshold": 0.1, "reference_rows": None}
ANSWERS = ("prediction_proba", "score", "prediction")  # the first the task has is compared


def tabular_drift_monitor(
    config_location: str | Path,
    home: TidemillHome,
    since_hours: float = 24 * 7,
    min_records: int = 30,
    drift: dict[str, Any] | None = None,
    min_labels: int = 30,
) -> dict[str, Any]:
    """One drift check of the tabular champion named by the config, with quality reports per
    variant that has ``min_labels`` labelled records; the decision and where the reports went
    (or why nothing was checked)."""
    import mlflow.pyfunc

    cfg = load_tabular_config(config_location)
    uri = registry.tracking_uri(cfg, home)
    model = cfg.mlflow.registered_model_name
    try:
        lineage = champion_lineage(uri, model)
    except MlflowException:
        return _nothing(f"no champion of {model!r} is registered yet: nothing to monitor")
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=since_hours)
    log_url = Settings.resolve(home, cfg).prediction_log_url
    served = tabular_records(engine_for(log_url), since, model_name=model)
    if len(served) < min_records:
        return _nothing(f"{len(served)} records of {model!r} in the prediction log since "
                        f"{since:%Y-%m-%d %H:%M} UTC; the check needs {min_records}")
    registry.use_store(uri)
    champion = mlflow.pyfunc.load_model(f"models:/{model}/{lineage.version}")
    bundle = champion.unwrap_python_model().bundle
    features = bundle.features
    reference = lineage.load_reference()
    missing = [c for c in features if c not in reference.columns or c not in served.columns]
    if missing:
        raise ValueError(f"feature(s) {missing} are missing from the training snapshot or the "
                         f"logged records of {model!r}")
    answers = bundle.predict(reference[features])
    answer = next(a for a in ANSWERS if a in answers.columns)
    config = DriftConfig.from_mapping({**DEFAULTS, **(drift or {})})
    now = datetime.now(UTC)
    quality = labelled_quality(
        cfg.task, served, bundle.meta.get("classes"), min_labels,
        {"metadata": {"model": model, "version": lineage.version},
         "timestamp": now.replace(tzinfo=None)}, bundle.meta.get("threshold"),
    )  # fmt: skip
    outcome = run_drift_check(
        reference[features].assign(**{TARGET: answers[answer].to_numpy(float)}),
        served[features],
        pd.DataFrame({"yhat": served[answer].to_numpy(float), "variant": served["variant"]}),
        home=home, model=model, version=lineage.version, config=config, tracking_uri=uri,
        columns=features, tags={"tidemill.task": cfg.task, "tidemill.drift.answer": answer},
        now=now, labelled=quality,
    )
    summary = outcome.summary() | {"records": len(served), "answer": answer}
    print(f"[tidemill] tabular drift of {model} v{lineage.version}: "
          f"{'DRIFT' if summary['detected'] else 'no drift'}; {len(served)} records, share "
          f"{summary['drift_share']:.2f}, {answer} drift {summary['prediction_drift']}",
          flush=True)
    for line in [f"quality of {v}: {m}" for v, m in quality.metrics.items()] + quality.notes:
        print(f"[tidemill] {line}", flush=True)
    return summary


def _nothing(reason: str) -> dict[str, Any]:
    print(f"[tidemill] tabular drift: {reason}", flush=True)
    return {"detected": False, "reason": reason}

