"""Queries over the prediction log shared by the control API (A/B tests) and the promotion DAG.

``joined_errors`` pairs each forecast point with an actual value, by request id when the
feedback named one, else by series id and timestamp, and summarises the errors per variant.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, func, insert, select

from serving.prediction_log.schema import actuals, predictions

METRICS = ("mae", "rmse", "mape", "coverage")


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
    rows = [{"series_id": s, "ds": iso_second(ds), "y": float(y), "received_at": now,
             "request_id": request_id} for s, ds, y in points]
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
        select(predictions.c.variant, predictions.c.model_version,
               func.count(func.distinct(predictions.c.request_id)), func.count())
        .where(cond).group_by(predictions.c.variant, predictions.c.model_version)
    )
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for variant, version, n_requests, n_windows in conn.execute(query):
            entry = out.setdefault(variant, {"requests": 0, "windows": 0, "versions": []})
            entry["requests"] += n_requests
            entry["windows"] += n_windows
            entry["versions"].append(version)
    return out


def joined_errors(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> dict[str, dict[str, Any]]:
    """Forecast errors per variant where actuals exist: points, MAE, RMSE, MAPE (%), interval
    coverage, versions. Variants without any actual yet are absent."""
    cond = _window(since, until)
    if model_name:
        cond = and_(cond, predictions.c.model_name == model_name)
    with engine.connect() as conn:
        preds = conn.execute(select(
            predictions.c.request_id, predictions.c.variant, predictions.c.model_version,
            predictions.c.series_id, predictions.c.forecast).where(cond)).all()
        if not preds:
            return {}
        first_ds = min(p.forecast[0]["ds"] for p in preds if p.forecast)
        acts = conn.execute(select(actuals.c.series_id, actuals.c.ds, actuals.c.y,
                                   actuals.c.request_id).where(actuals.c.ds >= first_ds)).all()
    by_request = {(a.request_id, a.ds): a.y for a in acts if a.request_id}
    by_series = {(a.series_id, a.ds): a.y for a in acts}
    errors: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    versions: dict[str, set[str]] = defaultdict(set)
    for p in preds:
        for point in p.forecast:
            y = by_request.get((p.request_id, point["ds"]))
            if y is None:
                y = by_series.get((p.series_id, point["ds"]))
            if y is not None:
                errors[p.variant].append((y, point["yhat"], point["lower"], point["upper"]))
                versions[p.variant].add(p.model_version)
    summary = {}
    for variant, rows in errors.items():
        arr = np.asarray(rows)
        y, yhat, lo, hi = arr.T
        err = yhat - y
        nonzero = np.abs(y) > 1e-12
        summary[variant] = {
            "points": int(arr.shape[0]),
            "mae": float(np.abs(err).mean()),
            "rmse": float(math.sqrt((err ** 2).mean())),
            "mape": float(np.abs(err[nonzero] / y[nonzero]).mean() * 100) if nonzero.any()
            else None,
            "coverage": float(((y >= lo) & (y <= hi)).mean()),
            "versions": sorted(versions[variant]),
        }
    return summary
