"""Non-blocking, batched writer of prediction-log rows.

The request path only appends an entry to an in-memory queue (``submit``, O(1), no I/O: the
entry holds the request's arrays as they are). Each entry becomes one ``prediction_requests``
row (window summaries by numpy, the payload JSON by orjson), and a background thread inserts
the rows in batches every ``flush_interval`` seconds with the driver's ``executemany``;
``close`` drains the queue, so a graceful shutdown loses no rows. If the database is
unavailable, rows stay queued and the insert is retried.

Submitted on an event loop (the serving workers), an entry is encoded on that loop once it has
sent the response, and the thread, at the lowest CPU priority, only binds and inserts rows.
Encoding in the thread made it hold the GIL for ~1 ms a batch, and the event loop, which
wants the GIL back at once, then waited for a thread the OS had to schedule next to the other
worker and the clients: on 2 cores that was +0.35 ms of CPU a batch-100 request and
batch-100 p99 at 8 connections 15-18 ms instead of 11-13 ms (``bench/RESULTS.md``).

Loss is bounded. The queue holds at most ``high_water`` entries (500) while the writer
keeps up: past that mark, each new forecast request waits (``backlogged``/``relieve``: up to
``MAX_WAIT_S`` a request, the event loop idle, so the writer thread gets the CPU and the GIL)
until the queue is under half the mark. So a worker killed with SIGKILL loses at most what its
queue held - about ``high_water`` entries plus the batch being inserted (``batch_rows``) - where
an unbounded queue lost 8.7% of a 60 s load run (``bench/RESULTS.md``). While inserts fail
(the database is down) requests do not wait; entries beyond ``max_pending`` (10,000) are
then dropped, and every dropped entry (or one that cannot be encoded) is counted in
``tidemill_prediction_log_dropped_rows_total``.

The interval is short (20 ms) on purpose: a flush every 250 ms was a ~20 ms burst that every
request in flight waited through (batch 100 at 64 connections: p99 104-114 ms at 250 ms,
80-88 ms at 20 ms; 5 ms cost more CPU in commits than it saved).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Engine

from serving import metrics
from serving.prediction_log.schema import engine_for, prediction_requests

log = logging.getLogger(__name__)


@dataclass
class LogEntry:
    """What one served request leaves behind; summarised into rows off the request path."""

    request_id: str
    ts: float
    caller: str | None
    variant: str
    model_name: str
    model_version: str
    series_ids: list[str | None]
    histories: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (index, values, ds) groups
    exog_columns: int
    ds: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


COLUMNS = tuple(c.name for c in prediction_requests.columns)


def entry_payload(entry: LogEntry) -> dict[str, Any]:
    """The ``payload`` of an entry's row: per-window lists in request order (timestamps as
    epoch seconds: formatting them is left to the readers, off the serving path)."""
    n = entry.yhat.shape[0]
    length = np.zeros(n, np.int64)
    last_ds = np.zeros(n, np.int64)
    mean, std, last = np.zeros(n), np.zeros(n), np.zeros(n)
    for index, values, ds in entry.histories:
        length[index] = values.shape[1]
        last_ds[index] = _epoch_seconds(ds[:, -1])
        mean[index], std[index] = _mean_std(values)
        last[index] = values[:, -1]
    return {
        "series_id": entry.series_ids,
        "history_len": length,
        "history_last_ds": last_ds,
        "history_mean": mean,
        "history_std": std,
        "history_last": last,
        "ds": _epoch_seconds(entry.ds),
        "yhat": entry.yhat,
        "lower": entry.lower,
        "upper": entry.upper,
    }


def _mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of each row, as products with a vector of
    ones: a third of the time of ``mean(axis=1)`` and ``std(axis=1)`` on short rows."""
    ones = np.ones(values.shape[1])
    mean = values @ ones / values.shape[1]
    deviation = values - mean[:, None]
    deviation *= deviation
    return mean, np.sqrt(deviation @ ones / values.shape[1])


def _epoch_seconds(ds: np.ndarray) -> np.ndarray:
    return ds.astype("datetime64[s]").astype(np.int64)


def entry_row(entry: LogEntry) -> tuple[Any, ...]:
    """The entry's ``prediction_requests`` row, values in ``COLUMNS`` order, with ``ts`` still
    epoch seconds (``_Insert.params`` converts it for the driver). The payload is JSON text.
    Entries of other kinds (``serving.tabular_model.TabularLogEntry``) make their own row."""
    if not isinstance(entry, LogEntry):
        return entry.row()
    payload = orjson.dumps(entry_payload(entry), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return (entry.request_id, entry.ts, entry.caller, entry.variant, entry.model_name,
            entry.model_version, entry.yhat.shape[0], entry.yhat.shape[1], entry.exog_columns,
            payload)


class _Insert:
    """The ``prediction_requests`` INSERT as the driver takes it: rows go straight to the
    DBAPI ``executemany`` (SQLAlchemy's per-row parameter processing costs ~20 us a row)."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = prediction_requests.insert().compile(dialect=dialect)
        self.sql = str(compiled)
        positions = compiled.positiontup
        self.named = positions is None
        if not self.named and tuple(positions) != COLUMNS:
            raise RuntimeError(f"unexpected INSERT parameter order {positions}")
        ts_type = prediction_requests.c.ts.type.dialect_impl(dialect)
        self.ts = ts_type.bind_processor(dialect) or (lambda value: value)

    def params(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        """``entry_row`` rows as the driver takes them."""
        rows = [(row[0], self.ts(_served_at(row[1])), *row[2:]) for row in rows]
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows] if self.named else rows


def _served_at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


class PredictionLogWriter:
    """Queue + background thread inserting batches into ``prediction_requests``."""

    def __init__(
        self, url: str, flush_interval: float = 0.02, batch_rows: int = 500,
        high_water: int = 500, max_pending: int = 10_000,
    ) -> None:
        self.url = url
        self.flush_interval = flush_interval
        self.batch_rows = batch_rows
        self.high_water = high_water
        self.max_pending = max_pending
        self.failing = False  # the last insert failed: requests do not wait for it
        self._entries: collections.deque[LogEntry] = collections.deque()  # not encoded yet
        self._rows: collections.deque[tuple[Any, ...]] = collections.deque()  # entry_row rows
        self._in_flight = 0  # rows taken off ``_rows`` by an insert not finished yet
        self._encode_scheduled = False
        self._wake = threading.Event()
        self._closing = False
        self._engine: Engine | None = None
        self._insert: _Insert | None = None
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, entry: LogEntry) -> None:
        """Queue an entry (never blocks, never raises on the request path). On an event loop
        its row is encoded there after the response has gone: one loop step later, since the
        response's writes leave at the end of this one (``serving.coalesced_writes``)."""
        self._entries.append(entry)
        if self._encode_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: the writer thread encodes it
            return
        self._encode_scheduled = True
        loop.call_soon(loop.call_soon, self._encode)

    @property
    def depth(self) -> int:
        return len(self._entries) + len(self._rows) + self._in_flight

    async def drained(self) -> None:
        """Wait (on an event loop) until the queue is under half of ``high_water``, the
        inserts fail, or ``MAX_WAIT_S`` passed."""
        deadline = time.monotonic() + MAX_WAIT_S
        low = self.high_water // 2
        while self.depth >= low and not self.failing and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(self.flush_interval)

    def _encode(self) -> None:
        """Turn every queued entry into its row (on whichever thread calls it; each entry is
        taken off the queue once)."""
        self._encode_scheduled = False
        entries, rows = self._entries, self._rows
        while entries:
            try:
                entry = entries.popleft()
            except IndexError:  # the other thread took the last one
                return
            try:
                rows.append(entry_row(entry))
            except Exception:  # a row that cannot be encoded is dropped, and counted
                log.exception("prediction log: could not encode request %s", entry.request_id)
                metrics.ERRORS.labels(kind="log_encode", model="prediction_log").inc()
                metrics.LOG_DROPPED.inc()

    def _take(self) -> list[tuple[Any, ...]]:
        taken: list[tuple[Any, ...]] = []
        while self._rows and len(taken) < self.batch_rows:
            taken.append(self._rows.popleft())
        self._in_flight = len(taken)
        return taken

    def _write(self, rows: list[tuple[Any, ...]]) -> bool:
        try:
            if self._engine is None:
                self._engine = engine_for(self.url)
                self._insert = _Insert(self._engine)
            with self._engine.begin() as conn:
                conn.exec_driver_sql(self._insert.sql, self._insert.params(rows))
        except Exception:
            log.exception("prediction log: insert of %d rows failed; will retry", len(rows))
            metrics.ERRORS.labels(kind="log_write", model="prediction_log").inc()
            self._rows.extendleft(reversed(rows))
            self._in_flight = 0
            self.failing = True
            return False
        self._in_flight = 0
        self.failing = False
        metrics.LOG_ROWS.inc(len(rows))
        return True

    def _drop_overflow(self) -> None:
        dropped = 0
        while self.depth > self.max_pending:
            queue = self._rows if self._rows else self._entries
            with contextlib.suppress(IndexError):
                queue.popleft()
                dropped += 1
        if dropped:
            log.error("prediction log: queue over %d entries, dropped %d", self.max_pending,
                      dropped)
            metrics.ERRORS.labels(kind="log_dropped", model="prediction_log").inc(dropped)
            metrics.LOG_DROPPED.inc(dropped)

    def _run(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # not on every platform
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        backoff = self.flush_interval
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            closing = self._closing
            if closing or not self._encode_scheduled:  # entries no event loop will encode
                self._encode()
            self._drop_overflow()
            ok = True
            while ok and self._rows:
                ok = self._write(self._take())
            metrics.LOG_QUEUE.set(self.depth)
            if closing and (ok or not self._rows):
                return
            backoff = self.flush_interval if ok else min(backoff * 2, 5.0)

    def close(self, timeout: float = 30.0) -> int:
        """Flush everything queued, stop the thread; return entries left unwritten (0)."""
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.1)
            self._wake.set()
        if self._engine is not None:
            self._engine.dispose()
        return self.depth


_writers: dict[str, PredictionLogWriter] = {}
_lock = threading.Lock()
MAX_WAIT_S = 2.0


def backlogged() -> bool:
    """Whether a writer of this process is past its mark while its inserts succeed (checked
    on every forecast request: a few attribute reads)."""
    for writer in _writers.values():
        if writer.depth >= writer.high_water and not writer.failing:
            return True
    return False


async def relieve() -> None:
    """Back-pressure: wait until every backlogged writer drained (see the module docstring)."""
    for writer in list(_writers.values()):
        if writer.depth >= writer.high_water:
            await writer.drained()


def writer_for(url: str) -> PredictionLogWriter:
    """The process's writer for ``url`` (created on first use, after any fork or spawn)."""
    with _lock:
        writer = _writers.get(url)
        if writer is None:
            writer = _writers[url] = PredictionLogWriter(url)
        return writer


def close_all(timeout: float = 30.0) -> None:
    """Flush and stop every writer of this process (graceful shutdown)."""
    with _lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        left = writer.close(timeout)
        if left:
            log.error("prediction log: %d entries could not be written to %s", left, writer.url)
