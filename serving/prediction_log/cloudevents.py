"""KServe ``logger`` CloudEvents -> prediction-log entries (the Kubernetes path).

The KServe agent posts the request and the response of each inference as two binary-mode
CloudEvents sharing ``ce-id`` (``ce-type`` ``org.kubeflow.serving.inference.request`` /
``...response``). Requests wait in a bounded buffer until their response arrives; the pair
becomes one ``LogEntry`` (a response whose request is not buffered is not logged, and counted).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.config import Limits
from serving.prediction_log.writer import LogEntry
from serving.protocol import ForecastRequest, RequestError, parse_spec, parse_v1, parse_v2

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def parse_any(body: Any, headers: Mapping[str, str]) -> ForecastRequest:
    """A logged request in whichever protocol it was sent."""
    limits = Limits(max_body_bytes=1 << 62, max_batch=1 << 30)
    if isinstance(body, dict) and "inputs" in body:
        return parse_v2(body, headers, limits)
    if isinstance(body, dict) and "data" in body:
        return parse_spec(body, headers, limits)
    return parse_v1(body, headers, limits)


def response_arrays(body: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """``(ds, yhat, lower, upper)`` of a V1, V2 or ``/predict`` response."""
    if "outputs" in body:
        out = {o["name"]: o for o in body["outputs"]}
        shape = out["forecast"]["shape"]
        return tuple(
            np.asarray(out[name]["data"], dtype="datetime64[ns]" if name == "timestamps"
                       else float).reshape(shape)
            for name in ("timestamps", "forecast", "lower", "upper")
        )
    if "confidence_intervals" in body:
        ci = body["confidence_intervals"]
        return (np.asarray([body["timestamps"]], "datetime64[ns]"),
                np.asarray([body["predictions"]], float), np.asarray([ci["lower"]], float),
                np.asarray([ci["upper"]], float))
    preds = body["predictions"]
    return (np.asarray([p["timestamps"] for p in preds], "datetime64[ns]"),
            *(np.asarray([p[k] for p in preds], float) for k in ("mean", "lower", "upper")))


class LoggerEventPairer:
    """Pairs request and response events by ``ce-id`` into log entries."""

    def __init__(self, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self._pending: collections.OrderedDict[str, ForecastRequest] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, headers: Mapping[str, str], body: Any) -> LogEntry | None:
        """Take one event; return the entry once both halves are in. Raises RequestError."""
        event_id = headers.get("ce-id")
        event_type = headers.get("ce-type")
        if not event_id or event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
            raise RequestError("ce-type", f"expected a KServe logger event, got {event_type!r}")
        if event_type == REQUEST_TYPE:
            request = parse_any(body, headers)
            with self._lock:
                self._pending[event_id] = request
                while len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
            return None
        with self._lock:
            request = self._pending.pop(event_id, None)
        if request is None:
            return None
        if not isinstance(body, dict):
            raise RequestError("body", "a logged response must be a JSON object")
        try:
            ds, yhat, lower, upper = response_arrays(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise RequestError("body", f"not a Tidemill forecast response ({exc})") from None
        params = body.get("parameters") or {}
        return LogEntry(
            request_id=event_id, ts=time.time(), caller=request.caller,
            variant=str(body.get("variant") or params.get("variant") or "unknown"),
            model_name=str(params.get("registered_model") or body.get("model_name", "unknown")),
            model_version=str(body.get("model_version", "unknown")),
            series_ids=request.series_ids,
            histories=[(g.index, g.values, g.ds) for g in request.groups],
            exog_columns=request.exog_columns, ds=ds, yhat=yhat, lower=lower, upper=upper,
        )
