"""A/B tests of champion and challenger: started by deploying the challenger at a split and
recording the experiment in the prediction log's ``ab_tests`` table; read back with
per-variant request counts and live errors. The control API and the platform API both call
these functions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from serving.prediction_log.reader import METRICS, joined_errors, utcnow, variant_counts
from serving.prediction_log.schema import ab_tests
from serving.split import SplitControl


def start(engine: Engine, ctl: SplitControl, challenger_version: str, split: int,
          duration_minutes: float, metric: str) -> dict[str, Any]:  # fmt: skip
    """Deploy the challenger at ``split`` percent and record the experiment."""
    status = ctl.deploy(challenger_version, split)
    started = utcnow()
    row = {
        "id": uuid.uuid4().hex[:12], "model_name": ctl.model_name,
        "champion_version": status["aliases"]["champion"],
        "challenger_version": str(challenger_version),
        "challenger_percent": split, "metric": metric, "started_at": started,
        "ends_at": started + timedelta(minutes=duration_minutes),
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(ab_tests), [row])
    return view(row, {}, {})


def read(engine: Engine, test_id: str) -> dict[str, Any] | None:
    """Per-variant request counts and, once actuals arrived, live error metrics (None: no
    such test)."""
    with engine.connect() as conn:
        found = conn.execute(select(ab_tests).where(ab_tests.c.id == test_id)).first()
    if found is None:
        return None
    row = dict(found._mapping)
    until = min(utcnow(), row["ends_at"])
    counts = variant_counts(engine, row["started_at"], until, row["model_name"])
    errors = joined_errors(engine, row["started_at"], until, row["model_name"])
    return view(row, counts, errors)


def view(row: dict[str, Any], counts: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    metric = row["metric"]
    leader = None
    scored = {v: e[metric] for v, e in errors.items() if e.get(metric) is not None}
    if len(scored) == 2:
        pick = max if metric == "coverage" else min
        leader = pick(scored, key=scored.get)
    iso = datetime.isoformat
    return {
        **{k: (iso(v) if isinstance(v, datetime) else v) for k, v in row.items()},
        "status": "running" if now < row["ends_at"] else "finished",
        "requests": counts,
        "errors": errors,
        "leader": leader,
        "metrics": list(METRICS),
    }
