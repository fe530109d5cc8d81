"""``kserve.ModelServer`` as Tidemill runs it: bound to a chosen host (127.0.0.1 locally),
no gRPC, no per-request log lines, and lean REST routes for the forecast endpoints.

KServe's REST server binds 0.0.0.0, logs every request (uvicorn access log, timing middleware,
latency line) and times each stage in its own histograms. Here the uvicorn config gets the
host and ``access_log=False``; the timing middleware is left out; and uvicorn serves
``ForecastRoutes``, an ASGI app in front of KServe's that answers the V1, V2 and ``/predict``
POSTs itself (orjson, straight to ``ForecastModel.serve``, one latency histogram) and passes
everything else on. Model metadata, examples and ``/metrics`` are plain Starlette routes; every
other KServe route (health, readiness, model lists, /docs) is the stock one, except the
repository load/unload routes, which are off (the control API changes what is served).
Queued prediction-log rows are flushed when uvicorn shuts down (SIGTERM/SIGINT), in each worker.

With several workers the supervisor accepts the connections and hands each to the worker with
the fewest open ones (``serving.connection_balancer``); every worker runs asyncio's event loop
(see ``TidemillRESTServer``) and freezes its start-up objects out of the garbage collector.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import fastapi
import orjson
from fastapi import Request, Response
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import generic_exception_handler
from kserve.model import BaseKServeModel
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
from kserve.protocol.rest.server import RESTServer, _RefreshingServer
from starlette._utils import get_route_path
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import metrics, online_features
from serving.config import Limits, model_name
from serving.connection_balancer import ConnectionBalancer, HandedConnections, listening_socket
from serving.forecast_model import ForecastModel
from serving.http_protocol import BodyBufferingProtocol
from serving.prediction_log.writer import backlogged, close_all, relieve
from serving.protocol import (
    INFERENCE_HEADER_LENGTH,
    REQUEST_ID_HEADER,
    ForecastRequest,
    RequestError,
    new_request_id,
    parse_spec,
    parse_v1,
    parse_v2,
    spec_response,
    v1_response,
    v2_binary_body,
    v2_response,
)
from serving.tabular_model import WIRE as TABULAR_WIRE
from serving.tabular_model import serve_tabular
from serving.v1_body import parse_v1_large

log = logging.getLogger(__name__)

JSON = "application/json"
WORKER_STARTUP_GRACE_S = 120.0
_DUMP = orjson.OPT_SERIALIZE_NUMPY


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # the stdlib accepts NaN/Infinity literals, which then fail validation by name
            return json.loads(body)
        except ValueError as exc:
            raise RequestError("body", f"is not valid JSON ({exc})") from None
        except RecursionError:
            raise RequestError("body", "is nested too deeply (arrays or objects within "
                                       "each other)") from None


async def _receive_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The request body from ASGI ``receive``, None when the client went away. Over ``limit``
    bytes (declared up front, or counted as it arrives): a 413 naming the limit."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError("body", f"{declared} bytes exceed the limit of {limit} bytes",
                           413, "too_large")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError("body", f"exceeds the limit of {limit} bytes", 413, "too_large")
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


def _check_content(content_type: str | None, encoding: str | None, binary: bool) -> None:
    """A 415 for a body that is not JSON (V2 binary tensor data: also octet-stream) or that
    claims a content coding: bodies are read as they come, never decompressed."""
    if content_type is not None and content_type != JSON:
        media = content_type.partition(";")[0].strip().lower()
        if not (media == JSON or media.endswith("+json")
                or (binary and media == "application/octet-stream")):
            raise RequestError("content-type", f"{content_type!r} is not accepted; send "
                               f"{JSON}" + (" or application/octet-stream" if binary else ""),
                               415, "unsupported_media_type")
    if encoding is not None and encoding.strip().lower() != "identity":
        raise RequestError("content-encoding", f"{encoding!r} is not accepted; send the body "
                           "uncompressed", 415, "unsupported_media_type")


def _lookup(models: Any, name: str) -> ForecastModel:
    model = models.get_model(name)
    if not isinstance(model, ForecastModel):
        served = sorted(models.get_models())
        raise RequestError("model", f"no model named {name!r}; served: {served}", 404,
                           "unknown_model")
    if not model.ready:
        raise RequestError("model", f"{name} is not ready", 503, "not_ready")
    return model


def _error(exc: RequestError, model: str) -> Response:
    metrics.ERRORS.labels(kind=exc.kind, model=model).inc()
    return Response(orjson.dumps(exc.body()), status_code=exc.status, media_type=JSON)


Parser = Callable[[Any, Any, Limits], ForecastRequest]
RawParser = Callable[[bytes, Any, Limits], ForecastRequest | None]
# Parsers of raw bodies that skip ``orjson.loads`` for the common large ones, returning None
# for any other body.
_RAW_PARSERS: dict[Parser, RawParser] = {parse_v1: parse_v1_large}
Formatter = Callable[[Any, ForecastRequest, float], dict[str, Any]]
Discover = Callable[[str], ForecastModel | None]  # a model deployed after start, by name
_JSON_HEADER = (b"content-type", JSON.encode())
# KServe's repository load/unload: off. They load or unload in one worker process of several,
# need no credentials and leave readiness saying ready; the control API changes what is served.
_REPOSITORY = "/v2/repository/"
_REPOSITORY_OFF = orjson.dumps({"error": "path: repository load/unload is off; the control "
                                "API changes what is served", "field": "path"})


async def _respond(send: Send, status: int, content: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    """What a Starlette ``Response(content, status, headers, media_type=JSON)`` sends."""
    headers.append((b"content-length", str(len(content)).encode()))
    headers.append(_JSON_HEADER)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class ForecastRoutes:
    """ASGI app in front of KServe's FastAPI app that answers the forecast POSTs itself:
    ``/v1/models/{model_name}:predict``, ``/v2/models/{model_name}/infer``, ``/predict`` (the
    default model) and ``/predict/{model_name}``,
    matched as Starlette matches ``routes`` (and answers KServe's repository load/unload
    POSTs with a 404: off). It reads the body from ``receive``, decodes it
    (large V1 bodies with simdjson, see ``serving/v1_body.py``; the rest with orjson),
    calls ``ForecastModel.serve`` (in the event loop: the forecast is CPU-bound and there is
    one worker process per core) and sends the response, skipping the middleware stack and
    the scan of KServe's routes. A refused request is its 4xx JSON; any other exception is
    logged and gets KServe's JSON 500, on a connection that stays usable. Every other request
    goes to the wrapped app unchanged, where ``routes`` are registered too: its 405s and
    trailing-slash redirects for these paths stay as they were.
    """

    _PATHS: tuple[tuple[str, Parser, Formatter], ...] = (
        ("/v1/models/{model_name}:predict", parse_v1,
         lambda r, p, _: v1_response(r, p.series_ids)),
        ("/v2/models/{model_name}/infer", parse_v2, lambda r, _p, _s: v2_response(r)),
        ("/predict", parse_spec,
         lambda r, _p, s: spec_response(r, (time.perf_counter() - s) * 1e3)),
        ("/predict/{model_name}", parse_spec,  # one of several served models
         lambda r, _p, s: spec_response(r, (time.perf_counter() - s) * 1e3)),
    )

    def __init__(self, app: ASGIApp, models: Any, limits: Limits, default_model: str,
                 discover: Discover | None = None) -> None:
        self.app = app
        self.models = models
        self.limits = limits
        self.default_model = default_model
        self.discover = discover
        self._discovering: dict[str, asyncio.Lock] = {}
        self.routes = [Route(path, _Endpoint(self, parse, fmt), methods=["POST"])
                       for path, parse, fmt in self._PATHS]
        self._matchers = [(route.path_regex, parse, fmt)
                          for route, (_, parse, fmt) in zip(self.routes, self._PATHS, strict=True)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = get_route_path(scope)
            for regex, parse, fmt in self._matchers:
                match = regex.match(path)
                if match is not None:
                    name = match.groupdict().get("model_name", self.default_model)
                    await self.forecast(scope, receive, send, name, parse, fmt)
                    return
            if path.startswith(_REPOSITORY):
                await _respond(send, 404, _REPOSITORY_OFF, [])
                return
        await self.app(scope, receive, send)

    async def model(self, name: str) -> ForecastModel:
        """The served model ``name``; one not served yet is looked for with ``discover`` (a
        model deployed after start), loaded in a thread and kept."""
        if self.discover is not None and self.models.get_model(name) is None:
            lock = self._discovering.setdefault(name, asyncio.Lock())
            async with lock:
                if self.models.get_model(name) is None:
                    try:
                        found = await asyncio.get_running_loop().run_in_executor(
                            None, self.discover, name)
                    except Exception as exc:
                        log.exception("could not load the deployed model %s", name)
                        raise RequestError("model", f"{name} is deployed but could not be "
                                           f"loaded: {exc}", 503, "not_ready") from exc
                    if found is not None:
                        self.models.update(found)
        return _lookup(self.models, name)

    async def forecast(self, scope: Scope, receive: Receive, send: Send, name: str,
                        parse: Parser, fmt: Formatter) -> None:
        """Answer one forecast request for the model ``name``."""
        if backlogged():  # the prediction log is behind: this request waits for it
            await relieve()
        started = time.perf_counter()
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:  # the first of repeated headers, as Starlette
            headers.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        try:
            body = await _receive_body(receive, headers.get("content-length"),
                                       self.limits.max_body_bytes)
            if body is None:
                return
            binary = headers.get(INFERENCE_HEADER_LENGTH)  # V2 binary tensor data extension
            _check_content(headers.get("content-type"), headers.get("content-encoding"),
                           binary is not None)
            model = await self.model(name)
            serve = model.serve
            if model.task != "forecast":  # a tabular model: its wire formats, same route
                parse, fmt = TABULAR_WIRE[parse]
                serve = functools.partial(serve_tabular, model)
            raw_parse = _RAW_PARSERS.get(parse) if binary is None else None
            parsed = raw_parse(body, headers, self.limits) if raw_parse else None
            if parsed is None:
                payload = _loads(body) if binary is None else v2_binary_body(body, binary)
                parsed = parse(payload, headers, self.limits)
            if getattr(parsed, "entities", None) is not None:  # tabular, by entity key
                await online_features.resolve(model, parsed)
            result = serve(parsed, headers.get(REQUEST_ID_HEADER) or new_request_id())
            content = orjson.dumps(fmt(result, parsed, started), option=_DUMP)
        except RequestError as exc:
            metrics.ERRORS.labels(kind=exc.kind, model=name).inc()
            await _respond(send, exc.status, orjson.dumps(exc.body()), [])
            return
        except Exception as exc:  # logged here: re-raised, uvicorn would drop the connection
            log.exception("forecast request to %s failed", name)
            await (await generic_exception_handler(None, exc))(scope, receive, send)
            return
        metrics.served(name, result.model_version, result.variant)[2].observe(
            time.perf_counter() - started)
        await _respond(send, 200, content, [
            (b"x-tidemill-variant", result.variant.encode("latin-1")),
            (REQUEST_ID_HEADER.encode(), result.request_id.encode("latin-1")),
        ])


class _Endpoint:
    """A forecast path as the ASGI app of a Starlette route (an endpoint that is neither a
    function nor a method is called as one), for requests that reach the wrapped app."""

    def __init__(self, routes: ForecastRoutes, parse: Parser, fmt: Formatter) -> None:
        self.routes, self.parse, self.fmt = routes, parse, fmt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path_params"].get("model_name", self.routes.default_model)
        await self.routes.forecast(scope, receive, send, name, self.parse, self.fmt)


def install_routes(app: fastapi.FastAPI, models: Any, forecast: ForecastRoutes) -> None:
    """Add the forecast routes, model metadata, examples and ``/metrics`` to ``app`` ahead of
    KServe's routes."""

    async def v2_metadata(request: Request) -> Response:
        name = request.path_params["model_name"]
        try:
            return Response(orjson.dumps((await forecast.model(name)).metadata()),
                            media_type=JSON)
        except RequestError as exc:
            return _error(exc, name)

    async def example(request: Request) -> Response:
        name = request.path_params["model_name"]
        try:
            return Response(orjson.dumps((await forecast.model(name)).example_request()),
                            media_type=JSON)
        except RequestError as exc:
            return _error(exc, name)

    async def metrics_route(_request: Request) -> Response:
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    # Plain Starlette routes: FastAPI's per-request dependency solving is skipped; KServe's
    # routes for the same forecast paths, registered after these, keep documenting them in /docs.
    app.router.routes.extend(forecast.routes)
    app.router.routes.extend(Route(path, endpoint, methods=methods) for path, endpoint, methods in (
        ("/v2/models/{model_name}", v2_metadata, ["GET"]),
        ("/v1/models/{model_name}/example", example, ["GET"]),
        ("/metrics", metrics_route, ["GET"]),
    ))


class _FlushingServer(_RefreshingServer):
    """Uvicorn server that writes queued prediction-log rows out during graceful shutdown
    (and closes its connections to the feature server).
    Given a Unix socket instead of listening ones, it serves the connections its supervisor
    hands over there (``HandedConnections``)."""

    _handed: HandedConnections | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if not sockets or sockets[0].family != socket.AF_UNIX:
            await super().startup(sockets=sockets)
            return
        await super().startup(sockets=[])
        config, loop = self.config, asyncio.get_running_loop()
        self._handed = HandedConnections(sockets[0], lambda: config.http_protocol_class(
            config=config, server_state=self.server_state, app_state=self.lifespan.state,
            _loop=loop), loop)

    async def shutdown(self, sockets: Any = None) -> None:
        if self._handed is not None:
            self._handed.close()
        await super().shutdown(sockets=sockets)
        await online_features.close()
        await asyncio.get_running_loop().run_in_executor(None, close_all)


class TidemillRESTServer(RESTServer):
    """KServe's REST server with a host, no access log, no timing middleware, fast routes."""

    def __init__(self, *args: Any, host: str, limits: Limits, default_model: str,
                 discover: Discover | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.config.access_log = False
        # asyncio's loop accepts every pending connection when the listening socket is
        # readable; under uvloop a worker busy with hundreds of connections accepted a few a
        # second (500 connections: the rest waited in the accept queue past wrk's 2 s
        # timeout), at the same CPU per request.
        self.config.loop = "asyncio"
        self.config.http = BodyBufferingProtocol  # batch-100 bodies read without a pause
        self.limits = limits
        self.default_model = default_model
        self.discover = discover
        self._server = _FlushingServer(self.config)

    def _add_middlewares(self, app: fastapi.FastAPI) -> None:
        """No per-request timing middleware (it logs and costs a route scan per request)."""

    def create_application(self) -> None:
        """Runs in each worker, after KServe configured logging there and loaded the models.

        Everything alive now lives as long as the worker: frozen out of the garbage
        collector, whose full collections would otherwise walk these ~250k objects (~100 ms,
        a latency spike) every few thousand requests."""
        from kserve.model_server import app

        access = logging.getLogger("uvicorn.access")  # uvicorn logs while it has handlers
        access.handlers.clear()
        access.propagate = False
        forecast = ForecastRoutes(app, self.dataplane.model_registry, self.limits,
                                  self.default_model, self.discover)
        install_routes(app, self.dataplane.model_registry, forecast)
        super().create_application()
        self.config.app = forecast  # uvicorn loads the app when it starts serving
        gc.collect()
        gc.freeze()


class _WorkerProcess(RESTServerProcess):
    """A worker whose liveness pings start after a startup grace period: loading the models
    in a fresh process can take longer than KServe's 5 s ping timeout on a busy machine."""

    def start(self) -> None:
        self.started = time.monotonic()
        super().start()

    def is_alive(self, timeout: float = 5) -> bool:
        if not self._process.is_alive():
            return False
        if time.monotonic() - self.started < WORKER_STARTUP_GRACE_S:
            return True
        return self.ping(timeout)


class _MultiProcess(RESTServerMultiProcess):
    """KServe's worker-process supervisor around a given REST server and worker class. It
    accepts the connections itself and hands each to the worker with the fewest open ones
    (``ConnectionBalancer``); a restarted worker gets a new channel, and until it is up the
    other workers take the new connections."""

    def __init__(self, rest_server: TidemillRESTServer, workers: int, grace_period: int) -> None:
        super().__init__(FASTAPI_APP_IMPORT_STRING, rest_server.dataplane,
                         rest_server.model_repository_extension, rest_server.config.port,
                         workers=workers, grace_period=grace_period)
        self._rest_server = rest_server

    def _spawn(self, worker: int) -> _WorkerProcess:
        channel = self._balancer.channel(worker)
        process = _WorkerProcess([channel], self._rest_server.run)
        process.start()  # the child has its own copy of the channel now
        channel.close()
        return process

    async def start(self) -> None:
        config = self._rest_server.config
        self._balancer = ConnectionBalancer(
            listening_socket(config.host, config.port, config.backlog), config.workers)
        self.init_processes([])
        self._balancer.start()
        try:
            while not self.should_exit.is_set():
                await asyncio.sleep(0.5)
                await self.keep_subprocess_alive([])
        finally:
            self._balancer.close()
        await self.terminate_all()

    def init_processes(self, sockets: list[Any]) -> None:
        self._processes.extend(map(self._spawn, range(self._rest_server.config.workers)))

    async def keep_subprocess_alive(self, sockets: list[Any]) -> None:
        """Replace dead or unresponsive workers. The liveness ping (up to 5 s for a stuck
        worker) runs in a thread: this event loop also accepts the connections."""
        loop = asyncio.get_running_loop()
        for idx, process in enumerate(self._processes):
            if self.should_exit.is_set():
                return
            if not await loop.run_in_executor(None, process.is_alive):
                process.kill()
                await process.wait_for_termination()
                if self.should_exit.is_set():
                    return
                self._processes[idx] = self._spawn(idx)
                log.warning("worker process [%s] died; started [%s]", process.pid,
                            self._processes[idx].pid)


class TidemillModelServer(ModelServer):
    """``kserve.ModelServer`` bound to ``host`` (default 127.0.0.1), REST only, quiet."""

    def __init__(self, host: str = "127.0.0.1", http_port: int = 8080, workers: int = 1,
                 limits: Limits | None = None, default_model: str | None = None,
                 grace_period: int = 20, discover: Discover | None = None) -> None:
        """``discover(name)``: a model not served at start (deployed later), or None."""
        super().__init__(http_port=http_port, workers=workers, enable_grpc=False,
                         enable_latency_logging=False,
                         grace_period=grace_period)
        self.host = host
        self.limits = limits or Limits.from_env()
        self.default_model = default_model or model_name()
        self.discover = discover
        online_features.lookup()  # a wrong TIDEMILL_FEAST_* setting stops the start, naming it

    def start(self, models: list[BaseKServeModel]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        rest = TidemillRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
            self.http_port, workers=self.workers, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            host=self.host, limits=self.limits, default_model=self.default_model,
            discover=self.discover,
        )
        if self.workers > 1:
            self._rest_multiprocess_server = _MultiProcess(rest, self.workers, self.grace_period)
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            self._rest_server = rest
            self.servers.append(rest.start())
        # kserve's own start configures asyncio.get_event_loop() and then serves on a new
        # loop from asyncio.run: the configured loop is never used or closed, and is collected
        # at exit after its self-pipe ("Exception ignored ... Invalid file descriptor: -1").
        # Here the loop that serves is the one configured, and it is closed.
        with asyncio.Runner() as runner:
            runner.get_loop()  # created and set as the current loop, for kserve to configure
            self.setup_event_loop()
            self.register_signal_handler()
            runner.run(self._serve())
