"""The drift_monitor job: champion lineage + recent data + prediction log -> drift decision.

Called by the ``drift_monitor`` DAG and usable without Airflow. Reference: the champion's
training snapshot (MLflow lineage). Current: the most recent ``window_rows`` rows of the
experiment's source (or of ``current_path``, e.g. a replayed batch). Predictions: what the
prediction log served for the champion's model in the last ``since_hours`` hours, with actuals
where they came back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException

from monitoring.drift import DriftConfig
from monitoring.drift_check import run_drift_check
from monitoring.lineage import champion_lineage
from pipelines.config import CsvSource, ParquetSource, load_config
from pipelines.data.ingest import load_raw
from pipelines.data.validate import validate
from pipelines.home import TidemillHome
from pipelines.registry import tracking_uri
from pipelines.settings import Settings
from serving.prediction_log.reader import forecast_points
from serving.prediction_log.schema import engine_for


def current_window(
    config_path: str | Path, window_rows: int, current_path: str | Path | None = None
) -> pd.DataFrame:
    """The last ``window_rows`` validated rows of each series of the source (or of
    ``current_path``)."""
    cfg = load_config(config_path)
    data = cfg.data
    if current_path is not None:
        kind = ParquetSource if str(current_path).endswith(".parquet") else CsvSource
        data = data.model_copy(update={"source": kind(path=Path(current_path)), "rows": None})
    frame = validate(
        load_raw(data), data, min_rows=1, max_missing_fraction=cfg.preprocess.max_missing_fraction
    )
    return frame.groupby("unique_id", sort=False).tail(window_rows).reset_index(drop=True)


def drift_monitor(
    config_path: str | Path,
    home: TidemillHome,
    window_rows: int = 168,
    since_hours: float = 24 * 7,
    current_path: str | Path | None = None,
    drift: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one drift check for the champion; returns the decision and where reports went."""
    cfg = load_config(config_path)
    uri = tracking_uri(cfg, home)
    model = cfg.mlflow.registered_model_name
    try:
        lineage = champion_lineage(uri, model)
    except MlflowException:
        reason = f"no champion of {model!r} is registered yet: nothing to monitor"
        print(f"[tidemill] drift_monitor: {reason}", flush=True)
        return {"detected": False, "reason": reason}
    current = current_window(config_path, window_rows, current_path)
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=since_hours)
    log_url = Settings.resolve(home, cfg).prediction_log_url
    points = forecast_points(engine_for(log_url), since, model_name=model)
    predictions = (
        None
        if points.empty
        else points.rename(
            columns={"lower": "yhat_lower", "upper": "yhat_upper", "series_id": "unique_id"}
        )
    )
    outcome = run_drift_check(
        lineage.load_reference(),
        current,
        predictions,
        home=home,
        model=model,
        version=lineage.version,
        champion_val_mae=lineage.val_mae,
        config=DriftConfig.from_mapping(drift or {}),
        tracking_uri=uri,
        tags={"tidemill.champion_version": lineage.version},
    )
    summary = outcome.summary()
    status = "DRIFT" if outcome.result.detected else "no drift"
    print(
        f"[tidemill] drift_monitor: {status} for {model} v{lineage.version}: "
        f"{outcome.result.reason} (report {outcome.report_dir})",
        flush=True,
    )
    return summary
