"""The prediction log's queue stays bounded: while the writer cannot insert for a while (a
real SQLite database held locked by another connection), requests wait for it instead of
piling up entries a killed worker would lose; once it is free every row is written. While
inserts fail outright, requests do not wait and the overflow is dropped and counted."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from serving import metrics
from serving.prediction_log import writer as log_writer
from serving.prediction_log.writer import LogEntry, PredictionLogWriter

HIGH_WATER = 200


def _entry(request_id: str) -> LogEntry:
    yhat = np.array([[1.0]])
    return LogEntry(request_id, time.time(), None, "champion", "model", "1", ["s"],
                    [(np.array([0]), np.ones((1, 3)), np.zeros((1, 3), "datetime64[ns]"))],
                    0, np.zeros((1, 1), "datetime64[ns]"), yhat, yhat, yhat)


async def _serve(writer: PredictionLogWriter, count: int) -> int:
    """``count`` requests as the forecast route handles them; the deepest queue seen."""
    deepest = 0
    for i in range(count):
        if log_writer.backlogged():
            await log_writer.relieve()
        writer.submit(_entry(f"r{i}"))
        deepest = max(deepest, writer.depth)
        await asyncio.sleep(0)
    return deepest


def _writer(url: str, **kwargs: int) -> PredictionLogWriter:
    writer = PredictionLogWriter(url, high_water=HIGH_WATER, **kwargs)
    log_writer._writers[url] = writer
    return writer


def test_requests_wait_for_a_writer_that_is_behind(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    url = f"sqlite:///{db}"
    writer = _writer(url)
    try:
        writer.submit(_entry("first"))  # creates the table
        deadline = time.monotonic() + 10
        while writer.depth and time.monotonic() < deadline:
            time.sleep(0.05)
        blocker = sqlite3.connect(db, check_same_thread=False)
        blocker.execute("BEGIN EXCLUSIVE")
        threading.Timer(1.0, blocker.rollback).start()  # the writer waits on the lock for 1 s
        deepest = asyncio.run(_serve(writer, 3 * HIGH_WATER))
        assert deepest <= HIGH_WATER, deepest
    finally:
        assert writer.close() == 0
        log_writer._writers.pop(url, None)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM prediction_requests").fetchone()[0] == \
            3 * HIGH_WATER + 1


def test_overflow_while_inserts_fail_is_dropped_and_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'log.db'}"  # cannot be opened: inserts fail
    dropped_before = metrics.LOG_DROPPED._value.get()
    writer = _writer(url, max_pending=2 * HIGH_WATER)
    try:
        writer.submit(_entry("first"))
        deadline = time.monotonic() + 10
        while not writer.failing and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        asyncio.run(_serve(writer, 4 * HIGH_WATER))
        assert time.monotonic() - started < 5  # no waiting on a writer that cannot write
        deadline = time.monotonic() + 10
        while (metrics.LOG_DROPPED._value.get() - dropped_before <= 2 * HIGH_WATER
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert writer.depth <= 2 * HIGH_WATER
        # 4 * HIGH_WATER + 1 submitted, none written, at most 2 * HIGH_WATER kept
        assert metrics.LOG_DROPPED._value.get() - dropped_before == 4 * HIGH_WATER + 1 - \
            writer.depth
    finally:
        writer.close(timeout=0.5)
        log_writer._writers.pop(url, None)
