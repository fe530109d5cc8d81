"""A/B tests of champion and challenger: started by deploying the challenger at a split and
recording the experiment in the prediction log's ``ab_tests`` table; read back, by id or by
name, with per-variant request counts and live errors. The control API and the platform API
both call these functions."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from serving.prediction_log.reader import METRICS, joined_errors, utcnow, variant_counts
from serving.prediction_log.schema import ab_tests
from serving.split import SplitControl, SplitError

ID_PATTERN = r"^[0-9a-f]{12}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # an id matches it too: either reads a test


def check_name(name: str | None) -> str | None:
    """A test's name must not read as another test's id (12 hex digits)."""
    if name is not None and re.fullmatch(ID_PATTERN, name):
        raise ValueError(f"name {name!r} looks like an A/B test id (12 hex digits); use a "
                         "name with another character, e.g. 'price-test-q4'")  # fmt: skip
    return name


def start(engine: Engine, ctl: SplitControl, challenger_version: str, split: int,
          duration_minutes: float, metric: str,
          name: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Record the experiment, then deploy the challenger at ``split`` percent. The record
    comes first so that a taken ``name`` (names are unique among all tests, finished ones
    too) is a 409 before anything moves; a refused deploy removes the record again."""
    check_name(name)
    row = {
        "id": uuid.uuid4().hex[:12], "name": name, "model_name": ctl.model_name,
        "champion_version": "", "challenger_version": str(challenger_version),
        "challenger_percent": split, "metric": metric, "started_at": utcnow(),
        "ends_at": utcnow() + timedelta(minutes=duration_minutes),
    }  # fmt: skip
    try:
        with engine.begin() as conn:
            conn.execute(insert(ab_tests), [row])
    except IntegrityError as exc:
        holder = read(engine, name) if name is not None else None
        if holder is None:
            raise
        raise SplitError(f"name {name!r} is taken by A/B test {holder['id']} of "
                         f"{holder['model_name']!r} ({holder['status']}, started "
                         f"{holder['started_at']}); names are unique, pick another", 409) from exc
    try:
        status = ctl.deploy(challenger_version, split)
    except BaseException:
        with engine.begin() as conn:
            conn.execute(delete(ab_tests).where(ab_tests.c.id == row["id"]))
        raise
    started = utcnow()
    row.update(champion_version=status["aliases"]["champion"], started_at=started,
               ends_at=started + timedelta(minutes=duration_minutes))  # fmt: skip
    with engine.begin() as conn:
        conn.execute(update(ab_tests).where(ab_tests.c.id == row["id"]).values(
            champion_version=row["champion_version"], started_at=started,
            ends_at=row["ends_at"]))  # fmt: skip
    return view(row, {}, {})


def read(engine: Engine, key: str) -> dict[str, Any] | None:
    """The test whose id or name is ``key``: per-variant request counts and, once actuals
    arrived, live error metrics (None: no such test)."""
    query = select(ab_tests).where(or_(ab_tests.c.id == key, ab_tests.c.name == key))
    with engine.connect() as conn:
        found = conn.execute(query).first()
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
