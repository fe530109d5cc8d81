"""Queries over the prediction log shared by the control API (A/B tests) and the drift and
promotion DAGs.

``logged_windows`` flattens the logged requests to one row per forecast window;
``forecast_points`` to one row per forecast step, paired with an actual value by request id
when the feedback named one, else by series id and timestamp; ``joined_errors`` summarises
the errors per variant; ``tabular_records`` flattens tabular requests to their records, each
with the label that came back for it (``record_labels``: feedback by request id and the
record's position in the request).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, func, insert, select

from serving.prediction_log.schema import PAYLOAD_KEYS, actuals, prediction_requests

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


RECORD_PREFIX = "record:"  # ``actuals.ds`` of a tabular record's label: ``record:<position>``


def record_labels(engine: Engine, request_id: str, labels: Iterable[tuple[int, float]]) -> int:
    """Store the observed labels ``(record, y)`` of the records of tabular request
    ``request_id`` (``record``: 0-based position in the request); returns the rows written."""
    now = utcnow()
    rows = [{"series_id": None, "ds": f"{RECORD_PREFIX}{int(record)}", "y": float(y),
             "received_at": now, "request_id": request_id} for record, y in labels]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(actuals), rows)
    return len(rows)


REQUEST_COLUMNS = ["request_id", "ts", "caller", "variant", "model_name", "model_version",
                   "exog_columns"]


def _requests(
    engine: Engine, since: datetime | None, until: datetime | None, model_name: str | None
) -> list[Any]:
    table = prediction_requests
    query = select(*(table.c[c] for c in REQUEST_COLUMNS), table.c.payload)
    with engine.connect() as conn:
        return conn.execute(query.where(_served(since, until, model_name))).all()


def _served(since: datetime | None, until: datetime | None, model_name: str | None) -> Any:
    """Requests served in ``[since, until)`` (open where None), by ``model_name`` if given."""
    table = prediction_requests
    conds = [table.c.ts >= since] if since is not None else []
    if until is not None:
        conds.append(table.c.ts < until)
    if model_name:
        conds.append(table.c.model_name == model_name)
    return and_(True, *conds)


def variant_counts(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> dict[str, dict[str, Any]]:
    """Requests and windows served per variant (and the versions behind them)."""
    table = prediction_requests
    query = (
        select(table.c.variant, table.c.model_version, func.count(), func.sum(table.c.windows))
        .where(_served(since, until, model_name))
        .group_by(table.c.variant, table.c.model_version)
    )
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for variant, version, n_requests, n_windows in conn.execute(query):
            entry = out.setdefault(variant, {"requests": 0, "windows": 0, "versions": []})
            entry["requests"] += n_requests
            entry["windows"] += int(n_windows or 0)
            entry["versions"].append(version)
    return out


def logged_windows(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    model_name: str | None = None,
) -> pd.DataFrame:
    """One row per logged forecast window: the request's columns (``request_id, ts, caller,
    variant, model_name, model_version, exog_columns``), ``window`` (its position in the
    request) and the payload's per-window entries (``series_id``, ``history_*``, and the
    forecast lists ``ds, yhat, lower, upper``)."""
    rows = []
    for req in _requests(engine, since, until, model_name):
        head = tuple(req[: len(REQUEST_COLUMNS)])
        payload = dict(req.payload)
        if "features" in payload:  # a tabular model's request (serving.tabular_model)
            continue
        payload["history_last_ds"] = _iso(payload["history_last_ds"]).tolist()
        payload["ds"] = _iso(payload["ds"]).tolist()
        per_window = zip(*(payload[k] for k in PAYLOAD_KEYS), strict=True)
        rows.extend((*head, window, *entry) for window, entry in enumerate(per_window))
    return pd.DataFrame(rows, columns=[*REQUEST_COLUMNS, "window", *PAYLOAD_KEYS])


def _iso(epoch_seconds: Any) -> np.ndarray:
    """Epoch seconds (any shape) as ``YYYY-MM-DDTHH:MM:SS`` strings."""
    stamps = np.asarray(epoch_seconds, dtype=np.int64).astype("datetime64[s]")
    return np.datetime_as_string(stamps, unit="s").astype(object)


def forecast_points(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> pd.DataFrame:
    """One row per served forecast point, with the actual where it came back.

    Columns: ``request_id, variant, model_version, series_id, ds`` (datetime64), ``step``
    (1-based), ``yhat, lower, upper``, ``y`` (NaN without an actual) and ``error`` (``y -
    yhat``). An actual is matched by request id when the feedback named one, else by series
    id and timestamp.
    """
    parts: dict[str, list[Any]] = {c: [] for c in POINT_COLUMNS[:-2]}
    for req in _requests(engine, since, until, model_name):
        payload = req.payload
        if "features" in payload:  # a tabular model's request (serving.tabular_model)
            continue
        yhat = np.asarray(payload["yhat"], dtype=float)
        n, horizon = yhat.shape
        for column, value in (("request_id", req.request_id), ("variant", req.variant),
                              ("model_version", req.model_version)):
            parts[column].append(np.full(n * horizon, value, dtype=object))
        parts["series_id"].append(np.repeat(np.asarray(payload["series_id"], object), horizon))
        parts["ds"].append(_iso(payload["ds"]).ravel())
        parts["step"].append(np.tile(np.arange(1, horizon + 1), n))
        parts["yhat"].append(yhat.ravel())
        for column in ("lower", "upper"):
            parts[column].append(np.asarray(payload[column], dtype=float).ravel())
    frame = pd.DataFrame({c: np.concatenate(v) if v else [] for c, v in parts.items()})
    frame["y"] = _actuals_for(engine, frame)
    frame["ds"] = pd.to_datetime(frame["ds"])
    frame["error"] = frame["y"] - frame["yhat"]
    return frame[POINT_COLUMNS]


def tabular_records(
    engine: Engine, since: datetime, until: datetime | None = None, model_name: str | None = None
) -> pd.DataFrame:
    """One row per feature record a tabular model answered (``serving.tabular_model``):
    ``request_id, record`` (position in the request), ``variant, model_version``, the features
    as sent, the answers (``prediction``, ``prediction_proba`` and ``proba_<class>`` of
    classifiers, ``score`` of anomaly detectors) and ``label`` (the fed-back label, the latest
    when several came; NaN without)."""
    frames = []
    for req in _requests(engine, since, until, model_name):
        payload = req.payload
        if "features" not in payload:  # a forecast
            continue
        frame = pd.DataFrame({**payload["features"],
                              **{k: v for k, v in payload.items() if k != "features"}})
        frames.append(frame.assign(request_id=req.request_id, record=np.arange(len(frame)),
                                   variant=req.variant, model_version=req.model_version))
    if not frames:
        return pd.DataFrame()
    records = pd.concat(frames, ignore_index=True)
    with engine.connect() as conn:
        fed = conn.execute(
            select(actuals.c.request_id, actuals.c.ds, actuals.c.y)
            .where(actuals.c.ds.startswith(RECORD_PREFIX))
            .where(actuals.c.request_id.in_(records["request_id"].unique().tolist()))
            .order_by(actuals.c.id)
        ).all()
    labels = {(a.request_id, int(a.ds[len(RECORD_PREFIX):])): a.y for a in fed}
    records["label"] = [labels.get(key, math.nan)
                        for key in zip(records["request_id"], records["record"], strict=True)]
    return records


def _actuals_for(engine: Engine, points: pd.DataFrame) -> np.ndarray:
    """The actual of each point (NaN where none): by ``(request_id, ds)`` first, else by
    ``(series_id, ds)``; the latest feedback wins when a point got several."""
    if points.empty:
        return np.zeros(0)
    with engine.connect() as conn:
        acts = conn.execute(
            select(actuals.c.series_id, actuals.c.ds, actuals.c.y, actuals.c.request_id)
            .where(actuals.c.ds >= points["ds"].min()).order_by(actuals.c.id)
        ).all()
    by_request = {(a.request_id, a.ds): a.y for a in acts if a.request_id}
    by_series = {(a.series_id, a.ds): a.y for a in acts}
    return np.array([
        by_request.get((r, d), by_series.get((s, d), math.nan))
        for r, s, d in zip(points["request_id"], points["series_id"], points["ds"], strict=True)
    ], dtype=float)


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
