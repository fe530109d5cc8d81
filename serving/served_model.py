"""A registered model version ready to forecast: its bundle (preprocessor + forecaster) and
where it came from. Loads from a model directory (what a KServe ``storageUri`` mounts at
``/mnt/models``: ``MLmodel`` + ``artifacts/bundle/``, or a bare bundle directory) or from the
MLflow registry by alias or version.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from pipelines.bundle import ForecastBundle, ForecastInputError
from serving.compiled_trees import compile_booster
from serving.protocol import ForecastRequest, RequestError, WindowGroup
from serving.tabular_model import load_tabular_dir, tabular_bundle_dir

log = logging.getLogger(__name__)


def bundle_dir(model_dir: str | Path) -> Path:
    """The bundle inside a model directory (``artifacts/bundle``) or the directory itself."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / "artifacts" / "bundle", model_dir):
        if (candidate / "bundle.json").exists():
            return candidate
    raise FileNotFoundError(
        f"no forecast bundle under {model_dir} (looked for artifacts/bundle/bundle.json "
        "and bundle.json)"
    )


def registered_identity(model_dir: str | Path) -> tuple[str | None, str | None]:
    """Registered name and version recorded by MLflow in ``registered_model_meta``."""
    meta = Path(model_dir) / "registered_model_meta"
    if not meta.exists():
        return None, None
    data = yaml.safe_load(meta.read_text()) or {}
    version = data.get("model_version")
    return data.get("model_name"), None if version is None else str(version)


class LeanBooster:
    """An ``xgboost.Booster`` whose ``inplace_predict`` of a dense float64 matrix calls the C
    API ``XGBoosterPredictFromDense`` with prebuilt arguments and one reused proxy DMatrix.
    xgboost's Python wrapper spends ~130 us a call (input type dispatch, JSON arguments, a
    class built for each result) on a ~80 us prediction of 100 trees, and without a proxy the
    C API builds one per call, whose context reads the cgroup CPU quota files (~60 us of
    system calls). Everything else is the wrapped booster's."""

    _ARGS = json.dumps({"type": 0, "training": False, "iteration_begin": 0, "iteration_end": 0,
                        "missing": float("nan"), "strict_shape": False, "cache_id": 0}).encode()

    def __init__(self, booster: Any) -> None:
        from xgboost.core import _LIB, _check_call

        self.booster = booster
        self.n_features = booster.num_features()
        self._proxy = ctypes.c_void_p()
        _check_call(_LIB.XGProxyDMatrixCreate(ctypes.byref(self._proxy)))
        weakref.finalize(self, _LIB.XGDMatrixFree, self._proxy)
        self._lock = threading.Lock()  # the proxy holds the input of one call at a time

    def inplace_predict(self, data: Any, **kwargs: Any) -> np.ndarray:
        if kwargs or not (isinstance(data, np.ndarray) and data.dtype == np.float64
                          and data.ndim == 2 and data.shape[1] == self.n_features
                          and data.flags.c_contiguous and data.shape[0] > 0):
            return self.booster.inplace_predict(data, **kwargs)
        from xgboost.core import _LIB, _check_call, c_bst_ulong

        interface = orjson.dumps({"data": [data.ctypes.data, True], "shape": data.shape,
                                  "strides": None, "typestr": "<f8", "version": 3})
        shape, dims = ctypes.POINTER(c_bst_ulong)(), c_bst_ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        with self._lock:
            _check_call(_LIB.XGBoosterPredictFromDense(
                self.booster.handle, interface, self._ARGS, self._proxy, ctypes.byref(shape),
                ctypes.byref(dims), ctypes.byref(preds)))
            if dims.value != 1 or shape[0] != data.shape[0]:  # not one value per row
                return self.booster.inplace_predict(data)
            return np.ctypeslib.as_array(preds, (data.shape[0],)).copy()  # the buffer is reused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)


def _serving_threads(bundle: ForecastBundle) -> None:
    """One compute thread per model (serving scales with worker processes, not threads), and
    the fastest prediction call: the trees compiled to native code where that is possible
    here (``serving.compiled_trees``), else xgboost's, called lean."""
    booster = getattr(bundle.forecaster, "booster", None)
    if booster is not None and hasattr(booster, "set_param"):
        booster.set_param({"nthread": 1})
        lean = LeanBooster(booster)
        bundle.forecaster.booster = compile_booster(lean) or lean


@dataclass
class ServedModel:
    """One loaded version. Pickles as its directory (worker processes reload it)."""

    bundle: ForecastBundle
    name: str
    version: str
    model_dir: str
    source_uri: str
    task = "forecast"  # ``ServedTabular.task`` says which tabular task

    @property
    def horizon(self) -> int:
        return self.bundle.horizon

    @property
    def min_history(self) -> int:
        return self.bundle.min_history

    @property
    def level(self) -> float:
        return float(self.bundle.meta.get("level", 0.9))

    @property
    def algorithm(self) -> str:
        return str(self.bundle.meta.get("algorithm", "unknown"))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return load_from_dir, (self.model_dir, self.name, self.version, self.source_uri)

    def forecast(self, request: ForecastRequest) -> tuple[np.ndarray, ...]:
        """``(ds, yhat, lower, upper)`` for every window in request order."""
        horizon = self.horizon if request.horizon is None else request.horizon
        if horizon > self.horizon:
            field = "forecast_horizon" if request.field_prefix == "data" else "parameters.horizon"
            raise RequestError(
                field, f"{horizon} is above this model's maximum of {self.horizon} "
                f"(model version {self.version})"
            )
        for group in request.groups:
            if group.values.shape[1] < self.min_history:
                raise RequestError(
                    f"{request.field_prefix}.values",
                    f"history has {group.values.shape[1]} values; model version {self.version} "
                    f"needs at least {self.min_history}",
                )
        ids = self._series_ids(request)
        try:
            if len(request.groups) == 1:
                g = request.groups[0]
                fc = self.bundle.forecast(g.values, g.ds[:, -1], horizon, ids,
                                          *self._regressors(request, g, horizon))
                return fc.ds, fc.yhat, fc.lower, fc.upper
            shape = (request.n_windows, horizon)
            out = (np.empty(shape, "datetime64[ns]"), np.empty(shape), np.empty(shape),
                   np.empty(shape))
            for g in request.groups:
                fc = self.bundle.forecast(g.values, g.ds[:, -1], horizon,
                                          None if ids is None else [ids[i] for i in g.index],
                                          *self._regressors(request, g, horizon))
                for arr, part in zip(out, (fc.ds, fc.yhat, fc.lower, fc.upper), strict=True):
                    arr[g.index] = part
            return out
        except ForecastInputError as exc:
            status, kind = (404, "unknown_series") if exc.field == "series_id" else (400,
                                                                                     "bad_request")
            raise RequestError(exc.field, str(exc).split(": ", 1)[-1], status, kind) from exc

    def _regressors(self, request: ForecastRequest, group: WindowGroup, horizon: int
                    ) -> tuple[dict[str, np.ndarray] | None, dict[str, np.ndarray] | None]:
        """The named regressors of a group's windows as ``(windows, length)`` arrays; a
        missing, short, non-numeric or non-finite one is a 400 naming series and column."""
        spec = self.bundle.exogenous
        if not (spec.historical or spec.future):
            return None, None
        length = group.values.shape[1]
        exog: dict[str, np.ndarray] = {}
        future: dict[str, np.ndarray] = {}
        for kind, columns, out in (("exog", spec.historical, exog),
                                   ("future_exog", spec.future, future)):
            for column in columns:
                rows = []
                for i in group.index:
                    window = None if request.regressors is None else request.regressors[i]
                    given = None if window is None else \
                        (window.exog if kind == "exog" else window.future).get(column)
                    rows.append(self._regressor_row(request, int(i), kind, column, given,
                                                    length if kind == "exog" else horizon))
                width = length if kind == "exog" else min(len(v) for v in rows)
                out[column] = np.stack([v[:width] for v in rows])
        return exog or None, future or None

    def _regressor_row(self, request: ForecastRequest, i: int, kind: str, column: str,
                       given: Any, length: int) -> np.ndarray:
        """One window's values of one regressor, checked."""
        spec = self.bundle.exogenous
        prefix = request.field_prefix
        field = {"instances": f"instances[{i}].{kind}.{column}",
                 "inputs": f"inputs.{kind}.{column}", "data": f"{kind}.{column}"}[prefix]
        uid = request.series_ids[i] or self.bundle.meta.get("series_id") or "series"
        who = f"series {uid!r}" + (f" (window {i})" if prefix == "inputs" else "")
        if kind == "exog":
            what = f"{length} values, one per history value"
        else:
            what = f"at least {length} values, one per forecast step (horizon {length})"
        needs = (f"model version {self.version} was trained with historical regressors "
                 f"{list(spec.historical)} and future regressors {list(spec.future)}")
        if given is None:
            raise RequestError(field, f"{who}: regressor {column!r} is missing: {what} needed "
                               f"({needs})", 400, "missing_regressor")
        try:
            values = np.asarray(given, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise RequestError(field, f"{who}: regressor {column!r} must be a list of numbers",
                               400, "bad_regressor") from None
        if values.ndim != 1 or (len(values) != length if kind == "exog" else
                                len(values) < length):
            got = len(values) if values.ndim == 1 else f"shape {values.shape}"
            raise RequestError(field, f"{who}: regressor {column!r} has {got} values; "
                               f"{what} needed", 400, "bad_regressor")
        bad = ~np.isfinite(values)
        if bad.any():
            raise RequestError(f"{field}[{int(np.argmax(bad))}]", f"{who}: regressor "
                               f"{column!r} is NaN, inf or missing", 400, "bad_regressor")
        return values

    def _series_ids(self, request: ForecastRequest) -> list[str] | None:
        """The series id of each window; None for a one-series model (it answers any id).
        A model of several series needs every window's id and must know it (else 4xx)."""
        known = self.bundle.series_ids
        if len(known) <= 1:
            return None
        ids = request.series_ids
        field = {"data": "series_id", "inputs": "parameters.series_id"}.get(
            request.field_prefix, "instances[{}].series_id")
        for i, uid in enumerate(ids):
            if uid is None:
                raise RequestError(field.format(i), f"is required: model version {self.version} "
                                   f"forecasts {len(known)} series ({', '.join(known[:3])}, ...)")
        return ids

    def self_test(self) -> None:
        """Forecast a synthetic history; raises if the model cannot predict."""
        n = self.min_history
        ds = np.datetime64("2020-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(1, "h")
        values = np.linspace(1.0, 2.0, n)
        spec = self.bundle.exogenous
        exog = {c: np.ones((1, n)) for c in spec.historical} or None
        future = {c: np.ones((1, self.horizon)) for c in spec.future} or None
        fc = self.bundle.forecast(values, ds[-1:], self.horizon, self.bundle.series_ids[:1],
                                  exog, future)
        if not np.isfinite(fc.yhat).all():
            raise RuntimeError(f"model version {self.version} produced non-finite forecasts")


def load_from_dir(
    model_dir: str | Path,
    name: str | None = None,
    version: str | None = None,
    source_uri: str | None = None,
) -> ServedModel:
    """Load a model directory; name and version default to ``registered_model_meta``. A
    tabular bundle loads as a ``serving.tabular_model.ServedTabular``."""
    model_dir = Path(model_dir)
    meta_name, meta_version = registered_identity(model_dir)
    name = name or meta_name or os.environ.get("TIDEMILL_REGISTERED_MODEL", "unregistered")
    version = version or meta_version or os.environ.get("TIDEMILL_MODEL_VERSION", "unknown")
    source_uri = source_uri or model_dir.as_uri()
    tabular = tabular_bundle_dir(model_dir)
    if tabular is not None:
        return load_tabular_dir(model_dir, tabular, name, version, source_uri)
    bundle = ForecastBundle.load(bundle_dir(model_dir))
    _serving_threads(bundle)
    return ServedModel(bundle=bundle, name=name, version=version, model_dir=str(model_dir),
                       source_uri=source_uri)


def registry_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def parse_registry_uri(uri: str) -> tuple[str, str]:
    """``models:/<name>/<version>`` -> (name, version)."""
    if not uri.startswith("models:/"):
        raise ValueError(f"not a registry model URI: {uri!r}")
    name, _, version = uri[len("models:/"):].rpartition("/")
    if not name or not version:
        raise ValueError(f"expected models:/<name>/<version>, got {uri!r}")
    return name, version


def load_from_registry(tracking_uri: str, name: str, ref: str) -> ServedModel:
    """Load ``name`` at a version number or an alias (``champion``, ``challenger``)."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.registry import use_store

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version(name, ref) if ref.isdigit() else \
        client.get_model_version_by_alias(name, ref)
    use_store(tracking_uri)
    local = mlflow.artifacts.download_artifacts(registry_uri(name, mv.version))
    log.info("loaded %s v%s from %s", name, mv.version, local)
    return load_from_dir(local, name, str(mv.version), registry_uri(name, mv.version))


def check_registered(tracking_uri: str, name: str, version: str) -> None:
    """Load ``name`` version ``version`` as the router would and forecast a synthetic history:
    raises (naming the version and the failure) when it cannot serve."""
    try:
        load_from_registry(tracking_uri, name, version).self_test()
    except Exception as exc:
        raise RuntimeError(f"{name} version {version} failed its load and test prediction: "
                           f"{type(exc).__name__}: {exc}") from exc


def load_uri(tracking_uri: str | None, uri: str) -> ServedModel:
    """A split URI: ``models:/<name>/<version>`` from the registry, else a local directory."""
    if uri.startswith("models:/"):
        if tracking_uri is None:
            raise ValueError(f"{uri} needs an MLflow tracking URI")
        name, version = parse_registry_uri(uri)
        return load_from_registry(tracking_uri, name, version)
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return load_from_dir(path, source_uri=uri)
