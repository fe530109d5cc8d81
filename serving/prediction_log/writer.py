"""Non-blocking, batched writer of prediction-log rows.

The request path only appends an entry to an in-memory queue (``submit``, O(1), no I/O). A
background thread turns entries into rows and inserts them in batches every
``flush_interval`` seconds; ``close`` drains the queue, so a graceful shutdown loses no rows.
If the database is unavailable, rows stay queued and the insert is retried.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from serving import metrics
from serving.prediction_log.schema import engine_for, predictions

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


def entry_rows(entry: LogEntry) -> list[dict[str, Any]]:
    """One ``predictions`` row per window of the entry."""
    served_at = datetime.fromtimestamp(entry.ts, UTC).replace(tzinfo=None)
    stamps = np.datetime_as_string(entry.ds, unit="s")
    rows: list[dict[str, Any]] = []
    for index, values, ds in entry.histories:
        means, stds = values.mean(axis=1), values.std(axis=1)
        last_ds = np.datetime_as_string(ds[:, -1], unit="s")
        for k, window in enumerate(index.tolist()):
            forecast = [
                {"ds": d, "yhat": y, "lower": lo, "upper": hi}
                for d, y, lo, hi in zip(
                    stamps[window].tolist(), entry.yhat[window].tolist(),
                    entry.lower[window].tolist(), entry.upper[window].tolist(), strict=True,
                )
            ]
            rows.append({
                "request_id": entry.request_id,
                "window": window,
                "ts": served_at,
                "caller": entry.caller,
                "variant": entry.variant,
                "model_name": entry.model_name,
                "model_version": entry.model_version,
                "series_id": entry.series_ids[window],
                "history_len": int(values.shape[1]),
                "history_last_ds": str(last_ds[k]),
                "history_mean": float(means[k]),
                "history_std": float(stds[k]),
                "history_last": float(values[k, -1]),
                "exog_columns": entry.exog_columns,
                "horizon": int(entry.yhat.shape[1]),
                "forecast": forecast,
            })
    return rows


class PredictionLogWriter:
    """Queue + background thread inserting batches into the ``predictions`` table."""

    def __init__(
        self, url: str, flush_interval: float = 0.25, batch_rows: int = 2000,
        max_pending: int = 1_000_000,
    ) -> None:
        self.url = url
        self.flush_interval = flush_interval
        self.batch_rows = batch_rows
        self.max_pending = max_pending
        self._queue: collections.deque[LogEntry] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._engine: Any = None
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, entry: LogEntry) -> None:
        """Queue an entry (never blocks, never raises on the request path)."""
        self._queue.append(entry)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def _take(self) -> list[LogEntry]:
        taken: list[LogEntry] = []
        rows = 0
        while self._queue and rows < self.batch_rows:
            entry = self._queue.popleft()
            taken.append(entry)
            rows += entry.yhat.shape[0]
        return taken

    def _write(self, entries: list[LogEntry]) -> bool:
        rows = [row for entry in entries for row in entry_rows(entry)]
        try:
            if self._engine is None:
                self._engine = engine_for(self.url)
            with self._engine.begin() as conn:
                conn.execute(predictions.insert(), rows)
        except Exception:
            log.exception("prediction log: insert of %d rows failed; will retry", len(rows))
            metrics.ERRORS.labels(kind="log_write", model="prediction_log").inc()
            self._queue.extendleft(reversed(entries))
            return False
        metrics.LOG_ROWS.inc(len(rows))
        return True

    def _drop_overflow(self) -> None:
        dropped = 0
        while len(self._queue) > self.max_pending:
            self._queue.popleft()
            dropped += 1
        if dropped:
            log.error("prediction log: queue over %d entries, dropped %d", self.max_pending,
                      dropped)
            metrics.ERRORS.labels(kind="log_dropped", model="prediction_log").inc(dropped)

    def _run(self) -> None:
        backoff = self.flush_interval
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            closing = self._closing
            self._drop_overflow()
            ok = True
            while ok and self._queue:
                ok = self._write(self._take())
            metrics.LOG_QUEUE.set(len(self._queue))
            if closing and (ok or not self._queue):
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
        return len(self._queue)


_writers: dict[str, PredictionLogWriter] = {}
_lock = threading.Lock()


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
