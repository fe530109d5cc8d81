"""The ``kserve.Model`` subclasses: a forecaster serving one registered version (the Kubernetes
predictor) and the base both it and the local champion/challenger router share.

``serve`` is the one code path from a parsed request to a logged result; the fast REST routes
(``serving.server``) and ``kserve.Model.predict`` (gRPC / stock data plane) both call it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from pipelines.exogenous import ExogSpec
from serving import metrics, online_features
from serving.config import Limits, prediction_log_url
from serving.prediction_log.writer import LogEntry, writer_for
from serving.protocol import (
    V2_INPUTS,
    V2_OUTPUTS,
    ForecastRequest,
    ForecastResult,
    RequestError,
    new_request_id,
    parse_v1,
    v1_response,
    v2_request,
)
from serving.served_model import ServedModel
from serving.tabular_model import (
    parse_tabular_v1,
    serve_tabular,
    tabular_example,
    tabular_metadata,
    tabular_v1_response,
)

log = logging.getLogger(__name__)


class ForecastModel(kserve.Model):
    """Chooses a served version for each request (``choose``), forecasts, counts and logs."""

    def __init__(self, name: str, limits: Limits | None = None,
                 log_url: str | None = None) -> None:
        super().__init__(name)
        self.limits = limits or Limits.from_env()
        self.log_url = log_url if log_url is not None else prediction_log_url()

    @abstractmethod
    def choose(self, request: ForecastRequest, request_id: str) -> tuple[ServedModel, str]:
        """The served version and its variant label for this request."""

    @abstractmethod
    def live(self) -> dict[str, ServedModel]:
        """Variant label -> served version, for everything this model can answer with."""

    @property
    def task(self) -> str:
        """``forecast``, or the tabular task of the served versions (``serving.tabular_model``
        answers then)."""
        return "forecast"

    def pinned(self, version: str, field: str) -> tuple[ServedModel, str]:
        """The live variant serving ``version``, or a 404 naming what is live."""
        live = self.live()
        for variant, served in live.items():
            if served.version == version:
                return served, variant
        names = ", ".join(f"{s.version} ({v})" for v, s in live.items())
        raise RequestError(field, f"version {version} is not served here; live: {names}",
                           status=404, kind="unknown_version")

    def serve(self, request: ForecastRequest, request_id: str | None = None) -> ForecastResult:
        request_id = request_id or new_request_id()
        if request.model_version is not None:
            field = "model_version" if request.field_prefix != "inputs" else \
                "parameters.model_version"
            served, variant = self.pinned(request.model_version, field)
        else:
            served, variant = self.choose(request, request_id)
        ds, yhat, lower, upper = served.forecast(request)
        result = ForecastResult(ds, yhat, lower, upper, served.name, served.version, variant,
                                served.level, request_id, self.name)
        requests, values, _ = metrics.served(self.name, served.version, variant)
        requests.inc()
        metrics.observe_many(values, yhat[:, 0])
        if self.log_url:
            writer_for(self.log_url).submit(LogEntry(
                request_id, time.time(), request.caller, variant, served.name, served.version,
                request.series_ids,
                [(g.index, g.values, g.ds) for g in request.groups],
                request.exog_columns, ds, yhat, lower, upper,
            ))
        return result

    # ----- metadata -------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return V2_INPUTS

    def get_output_types(self) -> list[dict[str, Any]]:
        return V2_OUTPUTS

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata with the live registered versions."""
        if self.task != "forecast":
            return tabular_metadata(self)
        live = self.live()
        return {
            "name": self.name,
            "versions": sorted({s.version for s in live.values()}, key=str),
            "platform": "tidemill",
            "inputs": V2_INPUTS,
            "outputs": V2_OUTPUTS,
            "parameters": {
                variant: {"model_name": s.name, "version": s.version, "algorithm": s.algorithm,
                          "horizon": s.horizon, "min_history": s.min_history,
                          "exogenous": s.bundle.exogenous.to_dict()}
                for variant, s in live.items()
            },
        }

    def example_request(self) -> dict[str, Any]:
        """A V1 request every live variant can answer (its longest saved input example)."""
        if self.task != "forecast":
            return tabular_example(self)
        best: dict[str, Any] = {}
        for served in self.live().values():
            path = Path(served.model_dir) / "input_example.json"
            if path.exists():
                instance = _example_instance(json.loads(path.read_text()),
                                             served.bundle.exogenous)
                if len(instance["values"]) > len(best.get("values", [])):
                    best = instance
        if not best:
            raise RequestError("model", "no input example is stored with the live models", 404)
        return {"instances": [best]}

    # ----- the stock kserve data plane (gRPC, transformers) ---------------------------------
    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        headers = headers or {}
        request_id = headers.get("x-request-id") or new_request_id()
        try:
            if self.task != "forecast" and not isinstance(payload, InferRequest):
                request = parse_tabular_v1(payload, headers, self.limits)
                await online_features.resolve(self, request)
                return tabular_v1_response(serve_tabular(self, request, request_id), None, 0.0)
            if isinstance(payload, InferRequest):
                return self._predict_v2(payload, headers, request_id)
            return v1_response(*self._serve_v1(payload, headers, request_id))
        except RequestError as exc:
            metrics.ERRORS.labels(kind=exc.kind, model=self.name).inc()
            raise InvalidInput(str(exc)) from exc

    def _serve_v1(self, payload: Any, headers: dict[str, str],
                  request_id: str) -> tuple[ForecastResult, list[str | None]]:
        request = parse_v1(payload, headers, self.limits)
        return self.serve(request, request_id), request.series_ids

    def _predict_v2(self, payload: InferRequest, headers: dict[str, str],
                    request_id: str) -> InferResponse:
        tensors = {}
        for i, inp in enumerate(payload.inputs):
            data = inp.as_numpy()
            if data.dtype.kind in "SO":
                data = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b)(data)
            tensors[inp.name] = (i, list(inp.shape), data.tolist())
        for needed in ("values", "timestamps"):
            if needed not in tensors:
                raise RequestError("inputs", f"tensor '{needed}' is missing")
        params = {k: getattr(v, "string_param", v) for k, v in (payload.parameters or {}).items()}
        result = self.serve(v2_request(tensors, params, headers, self.limits), request_id)
        n, h = result.yhat.shape
        stamps = np.datetime_as_string(result.ds, unit="s").astype(object)
        outputs = [
            InferOutput("forecast", [n, h], "FP64", result.yhat),
            InferOutput("lower", [n, h], "FP64", result.lower),
            InferOutput("upper", [n, h], "FP64", result.upper),
            InferOutput("timestamps", [n, h], "BYTES", stamps),
        ]
        return InferResponse(request_id, self.name, outputs, model_version=result.model_version,
                             parameters={"variant": result.variant, "request_id": request_id,
                                         "registered_model": result.model_name})


def _example_instance(example: dict[str, Any], spec: ExogSpec) -> dict[str, Any]:
    """A V1 instance from a logged input example (``dataframe_split``: columns, data): the
    rows with a target value are the history, the rows after them carry future regressors."""
    cols = example["columns"]
    rows = example.get("data", [])
    ds, y = (cols.index(c) for c in ("ds", "y"))
    n_hist = max((k + 1 for k, r in enumerate(rows) if r[y] is not None and r[y] == r[y]),
                 default=0)  # NaN (logged for the future rows) is not a value
    instance: dict[str, Any] = {"timestamps": [r[ds] for r in rows[:n_hist]],
                                "values": [r[y] for r in rows[:n_hist]]}
    if "unique_id" in cols:  # the series it belongs to (needed by a panel model)
        instance["series_id"] = str(rows[0][cols.index("unique_id")])
    if spec.historical:
        instance["exog"] = {c: [r[cols.index(c)] for r in rows[:n_hist]]
                            for c in spec.historical}
    if spec.future:
        instance["future_exog"] = {c: [r[cols.index(c)] for r in rows[n_hist:]]
                                   for c in spec.future}
    return instance


class TidemillPredictor(ForecastModel):
    """One registered version (what a KServe InferenceService predictor serves)."""

    def __init__(self, name: str, model_dir: str, variant: str | None = None,
                 limits: Limits | None = None, log_url: str | None = None) -> None:
        super().__init__(name, limits, log_url)
        self.model_dir = model_dir
        self.variant = variant or os.environ.get("TIDEMILL_VARIANT", "champion")
        self.served: ServedModel | None = None

    def load(self) -> bool:
        """Load the bundle; ready only once a test prediction succeeds."""
        from serving.served_model import load_from_dir

        served = load_from_dir(self.model_dir)
        served.self_test()
        self.served = served
        self.ready = True
        log.info("serving %s v%s (%s) from %s", served.name, served.version, served.algorithm,
                 self.model_dir)
        return self.ready

    def live(self) -> dict[str, ServedModel]:
        return {self.variant: self.served} if self.served else {}

    @property
    def task(self) -> str:
        return self.served.task if self.served else "forecast"

    def choose(self, request: ForecastRequest, request_id: str) -> tuple[ServedModel, str]:
        if self.served is None:
            raise RequestError("model", f"{self.name} is not loaded", 503, "not_ready")
        return self.served, self.variant
