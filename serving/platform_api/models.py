"""The platform API's model endpoints: deploy, deployed, promote, rollback, A/B tests, predict.

They call what the control API calls: ``serving.split.SplitControl`` (registry aliases and the
serving split changed together, each version loaded and test-predicted before it goes live)
and ``serving.ab_tests``; only the paths differ. Predictions go to the serving router, or by
model name to the model's own server (``TIDEMILL_PREDICT_URLS``: its InferenceService).
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import Engine

from pipelines.settings import Settings
from serving import ab_tests
from serving.platform_api.settings import PREDICT_URLS_ENV, PlatformSettings
from serving.prediction_log.schema import engine_for
from serving.served_model import check_registered
from serving.split import SplitControl, SplitError, backend_from_env

ROUTER_ENV = "TIDEMILL_ROUTER_URL"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
ModelName = Annotated[str, Path(pattern=NAME, description="registered model name")]
AbTestKey = Annotated[str, Path(pattern=ab_tests.NAME_PATTERN,
                                description="an A/B test's id or name")]


class DeployBody(BaseModel):
    model_config = {"extra": "forbid"}
    model_name: str = Field(pattern=NAME)
    version: str = Field(pattern=r"^[0-9]{1,9}$", description="becomes the challenger")
    canary_percent: int = Field(ge=0, le=100, description="challenger share of traffic")


class AbTestBody(BaseModel):
    model_config = {"extra": "forbid"}
    model_name: str = Field(pattern=NAME)
    challenger_version: str = Field(pattern=r"^[0-9]{1,9}$")
    split: int = Field(ge=1, le=99, description="challenger percent of traffic")
    duration_minutes: float = Field(gt=0, le=60 * 24 * 90)
    metric: Literal["mae", "rmse", "mape", "coverage"] = "mae"
    name: str | None = Field(None, pattern=ab_tests.NAME_PATTERN,
                             description="unique among A/B tests, e.g. 'price-test-q4'; "
                                         "predict and status take it instead of the id")

    @field_validator("name")
    @classmethod
    def _not_an_id(cls, name: str | None) -> str | None:
        return ab_tests.check_name(name)


class PredictBody(BaseModel):
    """A forecast (``data`` history + ``forecast_horizon``) or tabular ``features`` (one record
    or a list), as the router's ``/predict`` takes them."""

    model_config = {"extra": "forbid"}
    model_name: str | None = Field(None, pattern=NAME,
                                   description="registered model (default: the stack's first)")
    ab_test: str | None = Field(None, pattern=ab_tests.NAME_PATTERN,
                                description="an A/B test's id or name: predict with its model")
    data: list[tuple[str, float]] | None = Field(None, min_length=1, max_length=100_000,
                                                 description="history: [timestamp, value] rows")
    forecast_horizon: int | None = Field(None, ge=1, le=10_000)
    features: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="tabular models: one feature record or a list of them")
    model_version: str | None = Field(None, pattern=r"^[0-9]{1,9}$",
                                      description="a live version (champion or challenger)")
    user_id: str | None = Field(None, min_length=1, max_length=200,
                                description="caller key of the sticky champion/challenger split")

    @model_validator(mode="after")
    def _one_kind(self) -> PredictBody:
        forecast = self.data is not None or self.forecast_horizon is not None
        if forecast == (self.features is not None):
            raise ValueError("send either data + forecast_horizon (forecasting) or features "
                             "(tabular models)")
        if forecast and (self.data is None or self.forecast_horizon is None):
            raise ValueError("a forecast needs both data and forecast_horizon")
        return self


def _stack(settings: PlatformSettings) -> dict[str, Any]:
    try:
        return json.loads((settings.home.root / "serving" / "stack.json").read_text())
    except (OSError, ValueError):
        return {}


def router_url(settings: PlatformSettings, model_name: str | None = None) -> str | None:
    """Where a predict for ``model_name`` goes: its entry of ``TIDEMILL_PREDICT_URLS`` (on
    Kubernetes each registered model has its own InferenceService; a model the map does not
    name is a 404 naming the ones it does), else ``TIDEMILL_ROUTER_URL``, else the router of
    the home's running stack (stack.json)."""
    urls = settings.predict_urls
    if model_name is not None and urls:
        if model_name not in urls:
            raise HTTPException(404, f"no serving endpoint for model {model_name!r}: "
                                     f"{PREDICT_URLS_ENV} names {sorted(urls)}")  # fmt: skip
        return urls[model_name]
    url = os.environ.get(ROUTER_ENV)
    if url:
        return url.rstrip("/")
    return _stack(settings).get("router")


def predict_path(settings: PlatformSettings, model_name: str | None) -> str:
    """``/predict``: of the model's own server (``TIDEMILL_PREDICT_URLS``: it serves that
    model alone) or of the router's first model; else ``/predict/<endpoint>`` of a registered
    model: the endpoint the stack serves it under, its name when deployed after start."""
    if model_name is None or model_name in settings.predict_urls:
        return "/predict"
    served = {m.get("registered_model"): m.get("endpoint")
              for m in _stack(settings).get("models", [])}
    return f"/predict/{served.get(model_name) or model_name}"


def add_model_routes(app: FastAPI, settings: PlatformSettings, write: list[Any]) -> None:
    state: dict[str, Any] = {}

    def client() -> MlflowClient:
        if "client" not in state:
            uri = settings.tracking_uri
            state["client"] = MlflowClient(uri, registry_uri=uri)
        return state["client"]

    def log_engine() -> Engine:
        if "engine" not in state:
            state["engine"] = engine_for(Settings.resolve(settings.home).prediction_log_url)
        return state["engine"]

    def control(name: str) -> SplitControl:
        key = f"control:{name}"
        if key not in state:
            ctl = SplitControl(client(), name, backend_from_env(settings.home, name),
                               check=check_registered)
            ctl.alias_versions()  # 404 when not registered
            state[key] = ctl
        return state[key]

    @app.exception_handler(SplitError)
    async def split_error(_request: Any, exc: SplitError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, exc.status)

    @app.exception_handler(MlflowException)
    async def registry_error(_request: Any, exc: MlflowException) -> JSONResponse:
        status = {"RESOURCE_DOES_NOT_EXIST": 404, "INVALID_PARAMETER_VALUE": 400}.get(
            exc.error_code, 503)  # fmt: skip
        return JSONResponse({"detail": f"registry: {exc.message}"}, status)

    @app.get("/api/ml/models/deployed", tags=["models"])
    def deployed(
        name: Annotated[str | None, Query(pattern=NAME)] = None,
        status: Literal["champion", "challenger", "live", "all"] = "all",
    ) -> dict[str, Any]:
        """Registered versions with their aliases and live traffic weight (``name``: one
        model; ``status``: champion, challenger, live (serving traffic) or all)."""
        names = [name] if name else sorted(m.name for m in client().search_registered_models())
        out = []
        for model in names:
            view = control(model).status()
            weights = {entry["version"]: entry["weight"] for entry in view["live"]}
            for version in view["versions"]:
                row = {"model_name": model, **version,
                       "weight": weights.get(version["version"], 0)}  # fmt: skip
                keep = (status == "all" or status in version["aliases"]
                        or (status == "live" and row["weight"] > 0))  # fmt: skip
                if keep:
                    out.append(row)
        return {"models": out}

    @app.post("/api/ml/models/deploy", tags=["models"], dependencies=write)
    def deploy(body: DeployBody) -> dict[str, Any]:
        """Make a version the challenger at ``canary_percent`` percent of traffic."""
        return control(body.model_name).deploy(body.version, body.canary_percent)

    @app.post("/api/ml/models/{model_name}/promote", tags=["models"], dependencies=write)
    def promote(model_name: ModelName) -> dict[str, Any]:
        """The model's challenger becomes champion and takes all traffic."""
        return control(model_name).promote()

    @app.post("/api/ml/models/{model_name}/rollback", tags=["models"], dependencies=write)
    def rollback(
        model_name: ModelName,
        to_version: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
    ) -> dict[str, Any]:
        """Back to the previous champion, or to ``to_version``; the challenger is removed."""
        return control(model_name).rollback(to_version)

    @app.post("/api/ml/models/ab-test", tags=["models"], dependencies=write, status_code=201)
    def start_ab_test(body: AbTestBody) -> dict[str, Any]:
        """Deploy the challenger at ``split`` percent and record the experiment (``name``:
        unique, a taken one is a 409 naming the test that has it)."""
        return ab_tests.start(log_engine(), control(body.model_name), body.challenger_version,
                              body.split, body.duration_minutes, body.metric,
                              body.name)  # fmt: skip

    @app.post("/api/ml/models/predict", tags=["models"])
    def predict(body: PredictBody) -> JSONResponse:
        """Forecast through the serving router, or by model name through the model's own
        server (``TIDEMILL_PREDICT_URLS``), with its champion/challenger split sticky by
        ``user_id``; the answer names the variant and version that served it."""
        model_name = body.model_name
        if body.ab_test is not None:
            test = ab_tests.read(log_engine(), body.ab_test)
            if test is None:
                raise HTTPException(404, f"no A/B test with id or name {body.ab_test!r}")
            if model_name not in (None, test["model_name"]):
                raise HTTPException(422, f"A/B test {body.ab_test!r} is of model "
                                         f"{test['model_name']!r}, not {model_name!r}")  # fmt: skip
            model_name = test["model_name"]
        router = router_url(settings, model_name)
        if router is None and settings.predict_urls:
            raise HTTPException(422, "model_name: required, no default model is served "
                                     f"({ROUTER_ENV} unset); {PREDICT_URLS_ENV} names "
                                     f"{sorted(settings.predict_urls)}")  # fmt: skip
        if router is None:
            raise HTTPException(409, f"no serving stack: set {ROUTER_ENV} or start `tidemill "
                                     "serve` (or `tidemill up`) on this home")  # fmt: skip
        payload = body.model_dump(mode="json", exclude_none=True,
                                  exclude={"model_name", "ab_test"})  # fmt: skip
        try:
            resp = httpx.post(f"{router}{predict_path(settings, model_name)}",
                              json=payload, timeout=60)
            return JSONResponse(resp.json(), resp.status_code)
        except (httpx.HTTPError, ValueError) as exc:
            raise HTTPException(503, f"serving router at {router}: {exc}") from exc

    @app.get("/api/ml/models/ab-test/{test_id}", tags=["models"])
    def get_ab_test(test_id: AbTestKey) -> dict[str, Any]:
        """An A/B test by id or name: per-variant request counts and, once actuals arrived,
        live errors and the leader."""
        found = ab_tests.read(log_engine(), test_id)
        if found is None:
            raise HTTPException(404, f"no A/B test with id or name {test_id!r}")
        return found

