"""Queries over the prediction log shared by the control API (A/B tests) and the promotion DAG.

``forecast_points`` pairs each forecast point with an actual value, by request id when the
feedback named one, else by series id and timestamp; ``joined_errors`` summarises the errors
per variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, func, insert, select

from serving.prediction_log.schema import actuals, predictions

METRICS = ("mae", "rmse", "mape", "coverage")
POINT_COLUMNS = [
    "request_id",
    "variant",
    "model_version",
    "series_id",
    "ds",
    "step",
    "yhat",
    "lower",
    "upper",
    "y",
    "error",
]


def iso_second(value: Any) -> str:
    """A timestamp as the log stores it: ``YYYY-MM-DDTHH:MM:SS`` (naive UTC)."""
    ts = np.datetime64(value, "s") if not isinstance(value, np.datetime64) else value
    return str(np.datetime_as_string(ts.astype("datetime64[s]"), unit="s"))


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_actuals(
    engine: Engine, points: Iterable[tuple[str | None, Any, float]], request_id: str | None
) -> int:
    """Store actual values ``(series_id, ds, y)``; returns how many rows were written."""
    now = utcnow()
    rows = [
        {
            "series_id": s,
            "ds": iso_second(ds),
            "y": float(y),
            "received_at": now,
            "request_id": request_id,
        }
        for s, ds, y in points
    ]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(actuals), rows)
    return len(rows)


def _window(since: datetime, until: datetime | None) -> Any:
    cond = predictions.c.ts >= since
    return and_(cond, predictions.c.ts < until) if until is not None else cond


def variant_counts(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> dict[str, dict[str, Any]]:
    """Requests and windows served per variant (and the versions behind them)."""
    cond = _window(since, until)
    if model_name:
        cond = and_(cond, predictions.c.model_name == model_name)
    query = (
        select(
            predictions.c.variant,
            predictions.c.model_version,
            func.count(func.distinct(predictions.c.request_id)),
            func.count(),
        )
        .where(cond)
        .group_by(predictions.c.variant, predictions.c.model_version)
    )
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for variant, version, n_requests, n_windows in conn.execute(query):
            entry = out.setdefault(variant, {"requests": 0, "windows": 0, "versions": []})
            entry["requests"] += n_requests
            entry["windows"] += n_windows
            entry["versions"].append(version)
    return out


def forecast_points(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> pd.DataFrame:
    """One row per served forecast point, with the actual where it came back.

    Columns: ``request_id, variant, model_version, series_id, ds`` (datetime64), ``step``
    (1-based), ``yhat, lower, upper``, ``y`` (NaN without an actual) and ``error`` (``y -
    yhat``). An actual is matched by request id when the feedback named one, else by series
    id and timestamp.
    """
    cond = _window(since, until)
    if model_name:
        cond = and_(cond, predictions.c.model_name == model_name)
    with engine.connect() as conn:
        preds = conn.execute(
            select(
                predictions.c.request_id,
                predictions.c.variant,
                predictions.c.model_version,
                predictions.c.series_id,
                predictions.c.forecast,
            ).where(cond)
        ).all()
        first_ds = min((p.forecast[0]["ds"] for p in preds if p.forecast), default=None)
        acts = (
            []
            if first_ds is None
            else conn.execute(
                select(actuals.c.series_id, actuals.c.ds, actuals.c.y, actuals.c.request_id).where(
                    actuals.c.ds >= first_ds
                )
            ).all()
        )
    by_request = {(a.request_id, a.ds): a.y for a in acts if a.request_id}
    by_series = {(a.series_id, a.ds): a.y for a in acts}
    rows = []
    for p in preds:
        for step, point in enumerate(p.forecast, start=1):
            y = by_request.get((p.request_id, point["ds"]))
            if y is None:
                y = by_series.get((p.series_id, point["ds"]), math.nan)
            rows.append(
                (
                    p.request_id,
                    p.variant,
                    p.model_version,
                    p.series_id,
                    point["ds"],
                    step,
                    point["yhat"],
                    point["lower"],
                    point["upper"],
                    y,
                )
            )
    frame = pd.DataFrame(rows, columns=POINT_COLUMNS[:-1])
    frame["ds"] = pd.to_datetime(frame["ds"])
    frame["error"] = frame["y"] - frame["yhat"]
    return frame


def joined_errors(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> dict[str, dict[str, Any]]:
    """Forecast errors per variant where actuals exist: points, MAE, RMSE, MAPE (%), interval
    coverage, versions. Variants without any actual yet are absent."""
    points = forecast_points(engine, since, until, model_name).dropna(subset=["y"])
    summary = {}
    for variant, group in points.groupby("variant"):
        y, err = group["y"].to_numpy(), group["error"].to_numpy()
        nonzero = np.abs(y) > 1e-12
        summary[str(variant)] = {
            "points": len(group),
            "mae": float(np.abs(err).mean()),
            "rmse": float(math.sqrt((err**2).mean())),
            "mape": float(np.abs(err[nonzero] / y[nonzero]).mean() * 100)
            if nonzero.any()
            else None,
            "coverage": float(((y >= group["lower"]) & (y <= group["upper"])).mean()),
            "versions": sorted(group["model_version"].unique()),
        }
    return summary
