"""Serving a registered tabular model (classification, regression, anomaly detection) on the
same endpoints, split, metrics and prediction log as the forecasters.

A model directory whose bundle holds ``tabular.json`` (``pipelines.tabular.bundle``) loads as a
``ServedTabular``; an endpoint whose champion is one answers with the wire formats here
(``serving.server`` picks them by ``ForecastModel.task``):

V1 ``POST /v1/models/{name}:predict``::

    {"instances": [{"Type": "M", "Torque": 40.1, ...}, ...], "user_id": "u", "model_version": "2"}
    -> {"predictions": [{"prediction": 0, "prediction_proba": 0.03}, ...], "model_name",
        "model_version", "variant", "request_id", "task"}

V2 ``POST /v2/models/{name}/infer``: one tensor per feature, named as the feature, shape
``[n]`` or ``[n, 1]`` (numbers as FP64/INT64..., categories as BYTES); ``parameters``:
``user_id``, ``model_version``. Outputs ``prediction`` (FP64, INT64 or BYTES ``[n]``) and, for
classifiers, ``prediction_proba`` (FP64 ``[n]``: of the positive class when binary, else of the
predicted class); anomaly detectors add ``score``.

``POST /predict``: ``{"features": {...} or [{...}, ...], "user_id": ..., "model_version": null}``
-> ``prediction`` (and ``prediction_proba``, ``score``), one value for one record or a list for
a list, ``model_version``, ``variant``, ``request_id``, ``execution_time_ms``.

By entity key (``serving.online_features``, when ``TIDEMILL_FEAST_FEATURE_SERVER_URL`` is
set): ``/predict`` takes ``{"entity": {"UDI": 123}}`` (or a list of them) instead of
``features``, V1 takes ``{"entities": [{"UDI": 123}, ...]}`` instead of ``instances``; the
feature vector is read from Feast's online store at request time and logged as if sent.

Bad input (a missing or unknown feature, a value of the wrong type, an unseen category) is a
400 naming the feature and the record; nothing is logged for it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from pipelines.tabular.bundle import TabularBundle, TabularInputError
from serving import metrics
from serving.config import Limits
from serving.protocol import RequestError, caller_of
from serving.tabular_fast import FastTabular, verified

if TYPE_CHECKING:
    from serving.forecast_model import ForecastModel

_SCALARS = (str, int, float, type(None))


def tabular_bundle_dir(model_dir: str | Path) -> Path | None:
    """The tabular bundle in a model directory (``artifacts/<key>/tabular.json`` or
    ``tabular.json`` itself), None when there is none."""
    model_dir = Path(model_dir)
    if (model_dir / "tabular.json").exists():
        return model_dir
    found = sorted((model_dir / "artifacts").glob("*/tabular.json"))
    return found[0].parent if found else None


@dataclass
class TabularRequest:
    """Feature records as sent (one row each, columns as named), checked for shape and types
    of values; the bundle checks the features themselves."""

    frame: pd.DataFrame
    caller: str | None
    model_version: str | None
    field_prefix: str
    single: bool = False  # /predict with one record: scalar answers
    entities: list[Any] | None = None  # entity keys: ``frame`` is read from the feature server
    entity_field: str = "entity"


@dataclass
class TabularResult:
    out: pd.DataFrame  # prediction (+ prediction_proba, proba_<class>, score)
    model_name: str
    model_version: str
    variant: str
    request_id: str
    endpoint: str
    task: str


@dataclass
class ServedTabular:
    """One loaded tabular version. Pickles as its directory (worker processes reload it)."""

    bundle: TabularBundle
    name: str
    version: str
    model_dir: str
    source_uri: str
    fast: FastTabular | None = None  # numpy checks + preprocessing (serving.tabular_fast)

    @property
    def task(self) -> str:
        return self.bundle.task

    @property
    def algorithm(self) -> str:
        return str(self.bundle.meta.get("algorithm", "unknown"))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        from serving.served_model import load_from_dir

        return load_from_dir, (self.model_dir, self.name, self.version, self.source_uri)

    def predict(self, request: TabularRequest) -> pd.DataFrame:
        try:
            return self.bundle.predict(request.frame, self.fast.matrix if self.fast else None)
        except TabularInputError as exc:
            raise RequestError(f"{request.field_prefix}.{exc.field}",
                               str(exc).split(": ", 1)[-1]) from exc

    def example_records(self) -> list[dict[str, Any]]:
        """The input example saved with the model (MLflow's ``dataframe_split``), else one
        synthetic record (numbers 0, each category its first known value)."""
        path = Path(self.model_dir) / "input_example.json"
        if path.exists():
            example = json.loads(path.read_text())
            return [dict(zip(example["columns"], row, strict=True)) for row in example["data"]]
        meta = self.bundle.meta
        return [{**dict.fromkeys(meta["numeric"], 0.0),
                 **{c: values[0] for c, values in meta["categories"].items()}}]

    def self_test(self) -> None:
        """Predict the example records; raises if the model cannot."""
        out = self.bundle.predict(pd.DataFrame(self.example_records()))
        if self.task != "classification" and not np.isfinite(out["prediction"]).all():
            raise RuntimeError(f"model version {self.version} produced non-finite predictions")


def load_tabular_dir(model_dir: Path, bundle: Path, name: str, version: str,
                     source_uri: str) -> ServedTabular:
    """The version, with the numpy fast path when it reproduces the pipeline on the example."""
    served = ServedTabular(TabularBundle.load(bundle), name, version, str(model_dir), source_uri)
    served.fast = verified(served.bundle, pd.DataFrame(served.example_records()))
    return served


# ----- parsing --------------------------------------------------------------------------------
def _batch(n: int, field: str, limits: Limits) -> None:
    if n == 0:
        raise RequestError(field, "needs at least one feature record")
    if n > limits.max_batch:
        raise RequestError(field, f"{n} records exceed the limit of {limits.max_batch}", 413)


def _records(records: Any, field: str, limits: Limits) -> pd.DataFrame:
    """Feature records (objects of feature -> number, string or null) as a frame; every record
    must name the same features as the first."""
    if not isinstance(records, list):
        raise RequestError(field, "must be a list of feature records (objects)")
    _batch(len(records), field, limits)
    first = records[0]
    if not isinstance(first, dict):
        raise RequestError(f"{field}[0]", "must be an object of feature -> value")
    names = first.keys()
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(f"{field}[{i}]", "must be an object of feature -> value")
        if record.keys() != names:
            extra = sorted(set(record) - set(names))
            missing = sorted(set(names) - set(record))
            what = f"feature(s) {missing} missing" if missing else f"unknown feature(s) {extra}"
            raise RequestError(f"{field}[{i}].{(missing or extra)[0]}",
                               f"{what}; record 0 has {list(names)}")
        for key, value in record.items():
            if not isinstance(value, _SCALARS) or isinstance(value, bool):
                raise RequestError(f"{field}[{i}].{key}", "must be a number, a string or null, "
                                   f"got {type(value).__name__}")
    return pd.DataFrame.from_records(records, columns=list(names))


def _entities(records: Any, field: str, limits: Limits) -> list[Any]:
    """The keys of entity objects (``{"UDI": 123}``), checked against the configured key."""
    from serving.online_features import lookup

    config = lookup()
    if config is None:
        raise RequestError(field, "entity lookup is off on this server "
                                  "(TIDEMILL_FEAST_FEATURE_SERVER_URL is not set); send features")
    if not isinstance(records, list):
        raise RequestError(field, "must be a list of entity objects")
    _batch(len(records), field, limits)
    want = int if config.key_type == "int64" else str
    keys = []
    for i, record in enumerate(records):
        where = f"{field}[{i}]" if len(records) > 1 or field == "entities" else field
        if not isinstance(record, dict) or list(record) != [config.key]:
            got = list(record) if isinstance(record, dict) else type(record).__name__
            raise RequestError(where, f"must be an object with the one key {config.key!r} of "
                                      f"{config.view!r}, got {got}")
        value = record[config.key]
        if type(value) is not want:
            raise RequestError(f"{where}.{config.key}", f"must be {want.__name__}, got "
                                                        f"{type(value).__name__}")
        keys.append(value)
    return keys


def _by_entity(body: dict[str, Any], records: str, entities: str, headers: Mapping[str, str],
               limits: Limits, single: bool) -> TabularRequest | None:
    """The request by entity key when ``body`` sends ``entities`` instead of ``records``."""
    if entities not in body:
        return None
    if records in body:
        raise RequestError(entities, f"send either {records!r} or {entities!r}, not both")
    raw = body[entities]
    keys = _entities([raw] if single and isinstance(raw, dict) else raw, entities, limits)
    return TabularRequest(
        pd.DataFrame(), caller_of(body.get("user_id"), headers, "user_id"),
        _text(body.get("model_version"), "model_version"), entities,
        single and isinstance(raw, dict), keys, entities)


def parse_tabular_v1(body: Any, headers: Mapping[str, str], limits: Limits) -> TabularRequest:
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object with 'instances'")
    by_entity = _by_entity(body, "instances", "entities", headers, limits, single=False)
    if by_entity is not None:
        return by_entity
    return TabularRequest(
        _records(body.get("instances"), "instances", limits),
        caller_of(body.get("user_id"), headers, "user_id"),
        _text(body.get("model_version"), "model_version"), "instances")


def parse_tabular_v2(body: Any, headers: Mapping[str, str], limits: Limits) -> TabularRequest:
    """One V2 tensor per feature, ``[n]`` or ``[n, 1]``."""
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON inference request object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("inputs", "must be a non-empty list of tensors, one per feature")
    columns: dict[str, Any] = {}
    rows = None
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
            raise RequestError(f"inputs[{i}]", "must be a tensor object with a 'name'")
        name, shape, data = inp["name"], inp.get("shape"), inp.get("data")
        where = f"inputs.{name}"
        if not (isinstance(shape, list) and 1 <= len(shape) <= 2
                and all(type(s) is int and s >= 0 for s in shape)
                and (len(shape) == 1 or shape[1] == 1)):
            raise RequestError(f"{where}.shape", f"must be [n] or [n, 1], got {shape!r}")
        if not isinstance(data, list | np.ndarray):
            raise RequestError(f"{where}.data", "must be a list")
        values = list(data) if isinstance(data, np.ndarray) else data
        if values and isinstance(values[0], list):  # [[v], [v], ...]
            values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
        if len(values) != shape[0]:
            raise RequestError(f"{where}.data", f"has {len(values)} elements, shape {shape} "
                                                f"needs {shape[0]}")
        if rows is not None and shape[0] != rows:
            raise RequestError(f"{where}.shape", f"has {shape[0]} records, the first tensor "
                                                 f"{rows}")
        rows = shape[0]
        for value in values:
            if not isinstance(value, (*_SCALARS, np.generic)) or isinstance(value, bool):
                raise RequestError(f"{where}.data", "must hold numbers or strings, got "
                                                    f"{type(value).__name__}")
        if name in columns:
            raise RequestError(where, "is sent twice")
        columns[name] = values
    _batch(rows or 0, "inputs.shape[0]", limits)
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("parameters", "must be an object")
    return TabularRequest(
        pd.DataFrame(columns), caller_of(params.get("user_id"), headers, "parameters.user_id"),
        _text(params.get("model_version"), "parameters.model_version"), "inputs")


def parse_tabular_spec(body: Any, headers: Mapping[str, str], limits: Limits) -> TabularRequest:
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object with 'features'")
    by_entity = _by_entity(body, "features", "entity", headers, limits, single=True)
    if by_entity is not None:
        return by_entity
    features = body.get("features")
    single = isinstance(features, dict)
    return TabularRequest(
        _records([features] if single else features, "features", limits),
        caller_of(body.get("user_id"), headers, "user_id"),
        _text(body.get("model_version"), "model_version"), "features", single)


def _text(raw: Any, field: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise RequestError(field, f"must be a string, got {type(raw).__name__}")
    return str(raw)


# ----- serving --------------------------------------------------------------------------------
def serve_tabular(model: ForecastModel, request: TabularRequest,
                  request_id: str) -> TabularResult:
    """Choose the variant as for a forecast (sticky by caller), predict, count and log."""
    if request.model_version is not None:
        field = "parameters.model_version" if request.field_prefix == "inputs" else \
            "model_version"
        served, variant = model.pinned(request.model_version, field)
    else:
        served, variant = model.choose(request, request_id)  # type: ignore[arg-type]
    if not isinstance(served, ServedTabular):
        raise RequestError("model", f"version {served.version} is not a tabular model", 409,
                           "wrong_task")
    if request.entities is not None:  # the live versions' features were read: this one's
        meta = served.bundle.meta
        columns = [*meta["numeric"], *meta["categorical"]]
        if list(request.frame.columns) != columns:  # a copy costs ~0.3 ms; skip when equal
            request.frame = request.frame[columns]
    out = served.predict(request)
    result = TabularResult(out, served.name, served.version, variant, request_id, model.name,
                           served.task)
    requests, values, _ = metrics.served(model.name, served.version, variant)
    requests.inc()
    observed = out["prediction_proba"] if "prediction_proba" in out else out["prediction"]
    metrics.observe_many(values, observed.to_numpy(np.float64))
    if model.log_url:
        from serving.prediction_log.writer import writer_for

        writer_for(model.log_url).submit(TabularLogEntry(  # type: ignore[arg-type]
            request_id, time.time(), request.caller, variant, served.name, served.version,
            request.frame, out))
    return result


@dataclass
class TabularLogEntry:
    """A served tabular request for the prediction log: one ``prediction_requests`` row with
    ``windows`` = records, ``horizon`` = 1, ``exog_columns`` = features and the payload
    ``{"task", "features": {name: [values]}, "prediction": [...], ...}``."""

    request_id: str
    ts: float
    caller: str | None
    variant: str
    model_name: str
    model_version: str
    frame: pd.DataFrame
    out: pd.DataFrame

    def row(self) -> tuple[Any, ...]:
        payload = {"features": {c: self.frame[c].tolist() for c in self.frame.columns},
                   **{c: self.out[c].tolist() for c in self.out.columns}}
        text = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        return (self.request_id, self.ts, self.caller, self.variant, self.model_name,
                self.model_version, len(self.out), 1, self.frame.shape[1], text)


# ----- responses ------------------------------------------------------------------------------
_ANSWERS = ("prediction", "prediction_proba", "score")


def _columns(result: TabularResult) -> dict[str, list[Any]]:
    return {c: [None if isinstance(v, float) and math.isnan(v) else v
                for v in result.out[c].tolist()]
            for c in _ANSWERS if c in result.out}


def _head(result: TabularResult) -> dict[str, Any]:
    return {"model_name": result.model_name, "model_version": result.model_version,
            "variant": result.variant, "request_id": result.request_id, "task": result.task}


def tabular_v1_response(result: TabularResult, _request: Any, _started: float) -> dict[str, Any]:
    cols = _columns(result)
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    return {"predictions": records, **_head(result)}


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, int) for v in values):
        return "INT64"
    return "FP64" if all(isinstance(v, float) for v in values) else "BYTES"


def tabular_v2_response(result: TabularResult, _request: Any, _started: float) -> dict[str, Any]:
    outputs = [{"name": c, "datatype": _datatype(v), "shape": [len(v)],
                "data": v if _datatype(v) != "BYTES" else [str(x) for x in v]}
               for c, v in _columns(result).items()]
    return {"model_name": result.endpoint, "model_version": result.model_version,
            "id": result.request_id,
            "parameters": {"variant": result.variant, "request_id": result.request_id,
                           "registered_model": result.model_name, "task": result.task},
            "outputs": outputs}


def tabular_spec_response(result: TabularResult, request: TabularRequest,
                          started: float) -> dict[str, Any]:
    cols = _columns(result)
    answers = {c: v[0] for c, v in cols.items()} if request.single else cols
    return {**answers, **_head(result),
            "execution_time_ms": round((time.perf_counter() - started) * 1e3, 3)}


def tabular_metadata(model: ForecastModel) -> dict[str, Any]:
    """V2 model metadata: the live versions, their features as inputs, task and classes."""
    live = model.live()
    served = [s for s in live.values() if isinstance(s, ServedTabular)]
    meta = served[0].bundle.meta if served else {"numeric": [], "categorical": []}
    inputs = [{"name": c, "datatype": "FP64", "shape": [-1]} for c in meta["numeric"]] + \
        [{"name": c, "datatype": "BYTES", "shape": [-1]} for c in meta["categorical"]]
    return {
        "name": model.name,
        "versions": sorted({s.version for s in live.values()}, key=str),
        "platform": "tidemill",
        "inputs": inputs,
        "outputs": [{"name": c, "datatype": "FP64", "shape": [-1]} for c in _ANSWERS],
        "parameters": {
            variant: {"model_name": s.name, "version": s.version, "algorithm": s.algorithm,
                      "task": s.task, "classes": s.bundle.meta.get("classes")}
            for variant, s in live.items() if isinstance(s, ServedTabular)
        },
    }


def tabular_example(model: ForecastModel) -> dict[str, Any]:
    """A V1 request of the champion's saved example records."""
    served = next(iter(model.live().values()))
    return {"instances": served.example_records()}  # type: ignore[union-attr]


def _wire() -> dict[Any, tuple[Any, Any]]:
    from serving.protocol import parse_spec, parse_v1, parse_v2

    return {parse_v1: (parse_tabular_v1, tabular_v1_response),
            parse_v2: (parse_tabular_v2, tabular_v2_response),
            parse_spec: (parse_tabular_spec, tabular_spec_response)}


WIRE = _wire()  # the forecast parser of a route -> the tabular parser and formatter
