"""Prometheus metrics of the serving layer (names used by the alert rules and dashboard).

Labels ``model`` (endpoint name), ``version`` (registered version), ``variant``. With several
worker processes set ``PROMETHEUS_MULTIPROC_DIR`` before start; ``render`` then aggregates all
workers.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LABELS = ("model", "version", "variant")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
VALUE_BUCKETS = (-1000, -100, -50, -20, -10, -5, 0, 5, 10, 20, 50, 100, 1000, 10000)

REQUESTS = Counter(
    "tidemill_requests", "Forecast requests served, by model, version and variant", LABELS
)
LATENCY = Histogram(
    "tidemill_request_latency_seconds", "Forecast request latency (parse to response body)",
    LABELS, buckets=LATENCY_BUCKETS,
)
PREDICTION_VALUE = Histogram(
    "tidemill_prediction_value", "First-step point forecast of each served window",
    LABELS, buckets=VALUE_BUCKETS,
)
ERRORS = Counter("tidemill_errors", "Failed requests and log writes, by kind", ("kind", "model"))
LOG_QUEUE = Gauge(
    "tidemill_prediction_log_queue_depth", "Prediction-log entries waiting to be written",
    multiprocess_mode="livesum",
)
LOG_ROWS = Counter("tidemill_prediction_log_rows", "Prediction-log rows written (one per request)")
LOG_DROPPED = Counter(
    "tidemill_prediction_log_dropped_rows",
    "Prediction-log rows dropped (queue full while inserts failed, or not encodable)",
)


@functools.lru_cache(maxsize=256)
def served(model: str, version: str, variant: str) -> tuple[Counter, Histogram, Histogram]:
    """The request counter, prediction-value and latency histograms of one served variant
    (``labels`` looks a child up in ~2 us; a worker serves a handful of label sets)."""
    labels = (model, version, variant)
    return (REQUESTS.labels(*labels), PREDICTION_VALUE.labels(*labels),
            LATENCY.labels(*labels))


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for each value: one increment per touched bucket instead of
    one observation per value (``histogram`` is a labelled child)."""
    bounds = histogram._upper_bounds
    counts = np.bincount(np.asarray(bounds).searchsorted(values), minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))
    for i in np.flatnonzero(counts[:len(bounds)]).tolist():  # NaN matches no bucket
        histogram._buckets[i].inc(int(counts[i]))


def render() -> tuple[bytes, str]:
    """The exposition of this process, or of all workers in multiprocess mode."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8"
