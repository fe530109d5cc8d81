"""The control API: registered versions, the champion/challenger split, A/B tests, feedback.

    uvicorn serving.control_api:app --host 127.0.0.1 --port 8000      (OpenAPI docs at /docs)

Configuration (environment): ``TIDEMILL_CONTROL_TOKEN`` (bearer token every write needs; with
none configured, writes are refused), ``MLFLOW_TRACKING_URI`` (default: the Tidemill home's
registry), ``TIDEMILL_PREDICTION_LOG_URL`` (default: the home's SQLite log),
``TIDEMILL_SPLIT_BACKEND`` and the Kubernetes settings read by ``serving.split``,
``TIDEMILL_REGISTERED_MODEL`` (default: the only registered model).

Every split change goes through ``serving.split.SplitControl``: registry aliases and the split
change together or not at all. ``POST /prediction-log`` is the sink of KServe's ``logger``
CloudEvents (unauthenticated: the KServe agent sends no token; the chart's network policy lets
only the predictor pods reach it).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from pipelines.home import TidemillHome
from pipelines.settings import Settings
from serving import ab_tests, metrics
from serving.prediction_log.cloudevents import LoggerEventPairer
from serving.prediction_log.reader import record_actuals, record_labels
from serving.prediction_log.schema import engine_for
from serving.prediction_log.writer import close_all, writer_for
from serving.protocol import RequestError, parse_timestamps
from serving.served_model import check_registered
from serving.split import SplitControl, SplitError, backend_from_env, only_registered_model
from serving.textfile_metrics import TextfileCollector


@dataclass(frozen=True)
class ControlSettings:
    token: str | None
    tracking_uri: str
    prediction_log_url: str
    home: TidemillHome
    job_metrics_url: str  # ``<store>/metrics``: gauges the jobs (drift) write

    @classmethod
    def from_env(cls) -> ControlSettings:
        shared = Settings.resolve()
        return cls(
            token=os.environ.get("TIDEMILL_CONTROL_TOKEN") or None,
            tracking_uri=shared.mlflow_tracking_uri,
            prediction_log_url=shared.prediction_log_url,
            home=shared.home,
            job_metrics_url=shared.job_metrics_url,
        )

# Writes need ``Authorization: Bearer $TIDEMILL_CONTROL_TOKEN`` (declared in the OpenAPI).
Credentials = Annotated[HTTPAuthorizationCredentials | None,
                        Depends(HTTPBearer(auto_error=False, description="TIDEMILL_CONTROL_TOKEN"))]


class ErrorBody(BaseModel):
    detail: Any = Field(description="what was refused and why")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT[code]} for code in codes}


_ERROR_TEXT = {
    400: "malformed request (field named)",
    401: "missing or wrong bearer token",
    404: "no such model, version or A/B test",
    409: "the change conflicts with the current aliases or split",
    415: "body not JSON, or compressed",
    422: "request body fails validation",
    502: "the split could not be applied; aliases were put back",
    503: "the registry or the prediction log is unavailable, or the new version failed its "
         "load and test prediction",
}
READ_ERRORS = _errors(400, 404, 409, 503)
WRITE_ERRORS = _errors(400, 401, 404, 409, 415, 502, 503)

# ----- request bodies --------------------------------------------------------------------------
class DeployBody(BaseModel):
    version: str = Field(description="registered version to make the challenger")
    canary_percent: int = Field(ge=0, le=100, description="challenger share of traffic")
    model_name: str | None = None

class PromoteBody(BaseModel):
    model_name: str | None = None

class RollbackBody(BaseModel):
    version: str | None = Field(None, description="default: the previous champion")
    model_name: str | None = None

class AbTestBody(BaseModel):
    challenger_version: str
    split: int = Field(ge=1, le=99, description="challenger percent of traffic")
    duration_minutes: float = Field(gt=0, le=60 * 24 * 90)
    metric: Literal["mae", "rmse", "mape", "coverage"] = "mae"
    model_name: str | None = None
    name: str | None = Field(None, pattern=ab_tests.NAME_PATTERN,
                             description="unique among A/B tests; reads it instead of the id")

    @field_validator("name")
    @classmethod
    def _not_an_id(cls, name: str | None) -> str | None:
        return ab_tests.check_name(name)

class Actual(BaseModel):
    ds: str | None = Field(None, description="the forecast step's timestamp")
    record: int | None = Field(None, ge=0, description="a tabular record's position in its "
                                                       "request (with request_id)")
    y: float = Field(allow_inf_nan=False, description="the actual value, or the record's label")

class FeedbackBody(BaseModel):
    request_id: str | None = None
    series_id: str | None = None
    actuals: list[Actual] = Field(min_length=1, max_length=100_000)

    @model_validator(mode="after")
    def _keyed(self) -> FeedbackBody:
        if not self.request_id and not self.series_id:
            raise ValueError("feedback needs request_id or series_id")
        for i, actual in enumerate(self.actuals):
            if (actual.ds is None) == (actual.record is None):
                raise ValueError(f"actuals[{i}]: give ds (a forecast step) or record (a "
                                 "tabular record's position), one of them")
            if actual.record is not None and not self.request_id:
                raise ValueError(f"actuals[{i}]: record needs the request_id it belongs to")
        if len({a.record is None for a in self.actuals}) > 1:
            raise ValueError("actuals: forecast steps (ds) and record labels (record) go in "
                             "separate feedback bodies")
        return self

def create_app(settings: ControlSettings | None = None) -> FastAPI:
    settings = settings or ControlSettings.from_env()
    state: dict[str, Any] = {}

    def engine() -> Engine:
        if "engine" not in state:
            state["engine"] = engine_for(settings.prediction_log_url)
        return state["engine"]

    def client() -> MlflowClient:
        if "client" not in state:
            state["client"] = MlflowClient(settings.tracking_uri,
                                           registry_uri=settings.tracking_uri)
        return state["client"]

    def control(model_name: str | None) -> SplitControl:
        name = model_name or only_registered_model(client())
        key = f"control:{name}"
        if key not in state:
            backend = backend_from_env(settings.home, name)
            ctl = SplitControl(client(), name, backend, check=check_registered)  # 400: bad name
            ctl.alias_versions()  # 404: not registered (kept only for registered models)
            state[key] = ctl
        return state[key]

    def authorized(credentials: Credentials = None) -> None:
        if settings.token is None:
            raise HTTPException(401, "writes are disabled: no TIDEMILL_CONTROL_TOKEN configured",
                                headers={"WWW-Authenticate": "Bearer"})
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        close_all()
        if "engine" in state:
            state["engine"].dispose()

    app = FastAPI(title="Tidemill control API", version="1.0", lifespan=lifespan,
                  description=__doc__)
    pairer = LoggerEventPairer()
    write = [Depends(authorized)]

    @app.middleware("http")
    async def json_bodies_only(request: Request, call_next: Any) -> Response:
        """A 415 for a body that is not JSON or claims a content coding (never decoded)."""
        if request.method in ("POST", "PUT", "PATCH"):
            ctype = request.headers.get("content-type")
            media = (ctype or "").partition(";")[0].strip().lower()
            if ctype is not None and media != "application/json" and not media.endswith("+json"):
                return JSONResponse({"detail": f"content-type: {ctype!r} is not accepted; "
                                               "send application/json"}, 415)
            encoding = request.headers.get("content-encoding")
            if encoding is not None and encoding.strip().lower() != "identity":
                return JSONResponse({"detail": f"content-encoding: {encoding!r} is not "
                                               "accepted; send the body uncompressed"}, 415)
        return await call_next(request)

    @app.exception_handler(SplitError)
    async def split_error(_request: Request, exc: SplitError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, exc.status)

    @app.exception_handler(MlflowException)
    async def registry_error(_request: Request, exc: MlflowException) -> JSONResponse:
        """The registry refused (404/400) or could not be reached (503, bounded retries)."""
        status = {"RESOURCE_DOES_NOT_EXIST": 404, "INVALID_PARAMETER_VALUE": 400}.get(
            exc.error_code, 503)
        return JSONResponse({"detail": f"registry: {exc.message}"}, status)

    @app.exception_handler(SQLAlchemyError)
    async def log_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        return JSONResponse({"detail": f"prediction log unavailable: {exc}"}, 503)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"],
              responses=_errors(503))
    def readyz() -> dict[str, str]:
        try:
            client().search_registered_models(max_results=1)
            with engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise HTTPException(503, f"not ready: {exc}") from exc
        return {"status": "ready"}

    job_metrics = CollectorRegistry(auto_describe=False)
    job_metrics.register(TextfileCollector(settings.job_metrics_url))

    @app.get("/metrics", include_in_schema=False)
    def metrics_route() -> Response:
        """Serving metrics plus the gauges jobs wrote to ``<store>/metrics`` (drift)."""
        content, media_type = metrics.render()
        return Response(content + generate_latest(job_metrics), media_type=media_type)

    @app.get("/models", tags=["models"],
              responses=READ_ERRORS)
    def models(model_name: str | None = None) -> dict[str, Any]:
        """Registered versions, their aliases, and what is live at which weight."""
        return control(model_name).status()

    @app.post("/models/deploy", tags=["models"], dependencies=write,
              responses=WRITE_ERRORS)
    def deploy(body: DeployBody) -> dict[str, Any]:
        """Make a version the challenger at ``canary_percent`` percent of traffic."""
        return control(body.model_name).deploy(body.version, body.canary_percent)

    @app.post("/models/promote", tags=["models"], dependencies=write,
              responses=WRITE_ERRORS)
    def promote(body: PromoteBody | None = None) -> dict[str, Any]:
        """The challenger becomes champion and takes all traffic."""
        return control(body.model_name if body else None).promote()

    @app.post("/models/rollback", tags=["models"], dependencies=write,
              responses=WRITE_ERRORS)
    def rollback(body: RollbackBody | None = None) -> dict[str, Any]:
        """Back to the previous champion, or to a named version; the challenger is removed."""
        body = body or RollbackBody()
        return control(body.model_name).rollback(body.version)

    @app.post("/ab-tests", tags=["ab-tests"], dependencies=write, status_code=201,
              responses=WRITE_ERRORS)
    def start_ab_test(body: AbTestBody) -> dict[str, Any]:
        """Deploy the challenger at ``split`` percent and record the experiment."""
        return ab_tests.start(engine(), control(body.model_name), body.challenger_version,
                              body.split, body.duration_minutes, body.metric, body.name)

    @app.get("/ab-tests/{test_id}", tags=["ab-tests"],
              responses=READ_ERRORS)
    def get_ab_test(test_id: str) -> dict[str, Any]:
        """An A/B test by id or name: per-variant request counts and, once actuals arrived,
        live error metrics."""
        found = ab_tests.read(engine(), test_id)
        if found is None:
            raise HTTPException(404, f"no A/B test with id or name {test_id!r}")
        return found

    @app.post("/feedback", tags=["feedback"], dependencies=write, status_code=201,
              responses=WRITE_ERRORS)
    def feedback(body: FeedbackBody) -> dict[str, Any]:
        """Actual values for earlier predictions, by request id or by series and timestamp;
        labels of a tabular request's records by request id and record position."""
        if body.actuals[0].record is not None:
            labels = [(a.record, a.y) for a in body.actuals]
            return {"stored": record_labels(engine(), str(body.request_id), labels)}
        try:
            stamps = parse_timestamps([a.ds for a in body.actuals], "actuals[].ds")
        except RequestError as exc:
            raise HTTPException(422, str(exc)) from exc
        points = [(body.series_id, ds, a.y) for ds, a in zip(stamps, body.actuals, strict=True)]
        return {"stored": record_actuals(engine(), points, body.request_id)}

    @app.post("/prediction-log", tags=["prediction-log"], status_code=202,
              responses=_errors(400, 415, 503))
    async def prediction_log(request: Request) -> dict[str, Any]:
        """Sink for KServe ``logger`` CloudEvents (binary mode)."""
        try:
            entry = pairer.add(request.headers, orjson.loads(await request.body()))
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"body: not JSON ({exc})") from exc
        except RequestError as exc:
            metrics.ERRORS.labels(kind="logger_event", model="prediction_log").inc()
            raise HTTPException(400, str(exc)) from exc
        if entry is not None:
            writer_for(settings.prediction_log_url).submit(entry)
        return {"accepted": True, "logged": entry is not None}

    return app

app = create_app()
