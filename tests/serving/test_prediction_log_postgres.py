"""The prediction log on a real PostgreSQL server (Debian's package, started here on loopback):
rows written by the background writer, read back per window and per step, joined with
actuals; rows submitted while the server is down are kept and written once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest

from serving.prediction_log.reader import (
    forecast_points,
    joined_errors,
    logged_windows,
    record_actuals,
    utcnow,
    variant_counts,
)
from serving.prediction_log.schema import engine_for
from serving.prediction_log.writer import LogEntry, PredictionLogWriter
from tests.servers import Postgres
from tests.servers import postgres as start_postgres
from tests.serving.conftest import wait_for


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster on a free loopback port (``tests.servers``)."""
    with start_postgres() as server:
        yield server


def _entry(request_id: str, variant: str, version: str, start: float) -> LogEntry:
    """Windows ``a`` (3 values) and ``b`` (5 values) in two groups; horizon 2."""
    hours = np.arange(6) * 3600 * 10**9
    ds = (np.array([[1, 2], [5, 6]]) * 3600 * 10**9).view("datetime64[ns]")
    yhat = np.array([[start, start + 1], [start + 2, start + 3]])
    return LogEntry(
        request_id, time.time(), "caller-1", variant, "model", version, ["a", "b"],
        [(np.array([0]), np.array([[1.0, 2.0, 3.0]]), hours[None, :3].view("datetime64[ns]")),
         (np.array([1]), np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]),
          hours[None, :5].view("datetime64[ns]"))],
        0, ds, yhat, yhat - 1, yhat + 1)


def test_round_trip_on_postgres(postgres: Postgres) -> None:
    since = utcnow() - timedelta(minutes=1)
    writer = PredictionLogWriter(postgres.url(), flush_interval=0.05)
    writer.submit(_entry("pg-1", "champion", "1", 10.0))
    writer.submit(_entry("pg-2", "challenger", "2", 20.0))
    assert writer.close() == 0
    engine = engine_for(postgres.url())

    windows = logged_windows(engine, since).sort_values(["request_id", "window"])
    assert list(windows["series_id"]) == ["a", "b", "a", "b"]
    assert list(windows["history_len"]) == [3, 5, 3, 5]
    assert list(windows["history_last_ds"])[:2] == ["1970-01-01T02:00:00", "1970-01-01T04:00:00"]
    assert windows.iloc[1]["ds"] == ["1970-01-01T05:00:00", "1970-01-01T06:00:00"]
    assert windows.iloc[1]["history_mean"] == 3.0

    counts = variant_counts(engine, since)
    assert counts["champion"] == {"requests": 1, "windows": 2, "versions": ["1"]}
    assert counts["challenger"] == {"requests": 1, "windows": 2, "versions": ["2"]}

    assert record_actuals(engine, [("a", np.datetime64("1970-01-01T01:00:00"), 12.0)], None) == 1
    assert record_actuals(engine, [("b", np.datetime64("1970-01-01T06:00:00"), 30.0)],
                          "pg-2") == 1
    points = forecast_points(engine, since)
    assert len(points) == 8
    matched = points.dropna(subset=["y"]).set_index(["request_id", "series_id", "step"])
    # an actual reported for a request id is still the series' value at that time
    assert matched["y"].to_dict() == {("pg-1", "a", 1): 12.0, ("pg-2", "a", 1): 12.0,
                                      ("pg-1", "b", 2): 30.0, ("pg-2", "b", 2): 30.0}
    errors = joined_errors(engine, since)
    assert errors["champion"]["points"] == 2
    assert errors["champion"]["mae"] == pytest.approx((2.0 + 17.0) / 2)
    assert errors["challenger"]["points"] == 2
    assert errors["challenger"]["mae"] == pytest.approx((8.0 + 7.0) / 2)


def test_rows_wait_while_postgres_is_down(postgres: Postgres) -> None:
    since = utcnow() - timedelta(minutes=1)
    writer = PredictionLogWriter(postgres.url(), flush_interval=0.05)
    writer.submit(_entry("pg-up", "champion", "1", 1.0))
    wait_for(lambda: writer.depth == 0, what="the first row written")
    postgres.stop()
    try:
        writer.submit(_entry("pg-down", "champion", "1", 1.0))
        time.sleep(0.5)  # a few failed flush attempts; the row stays queued
        wait_for(lambda: writer.depth == 1, what="the row kept in the queue")
    finally:
        postgres.start()
    assert writer.close() == 0
    ids = set(logged_windows(engine_for(postgres.url()), since)["request_id"])
    assert {"pg-up", "pg-down"} <= ids
