"""The local champion/challenger router: one ``kserve.Model`` hosting both variants in-process.

The variant of a request is a stable hash of its caller key (``user_id`` field or ``x-user-id``
header; the request id when there is none) into 10 000 buckets: buckets below
``challenger_percent * 100`` go to the challenger. The same caller keeps its variant while the
split is unchanged, and raising the percent only moves champion callers over. No network hop:
each worker process holds both models.

The split comes from the local split backend (``serving.split``): the state file is checked at
most twice a second on the request path (one ``stat``); a change is loaded in a background
thread and swapped in atomically once the new versions passed a test prediction.

    python -m serving.router --home H [--port 8080] [--workers 2]
                             [--model REGISTERED[=ENDPOINT] ...] [--model-name tidemill-forecaster]

Several registered models are served side by side, one ``TidemillRouter`` each under its own
endpoint (``/v1/models/<endpoint>:predict``, as KServe serves one InferenceService per model),
each with its own split file (``serving.split``) and its own sticky split; ``/predict`` goes
to the first, ``/predict/<endpoint>`` to any. A model deployed after the router started (the
control or platform API wrote its split file) is served under its registered name from its
first request on (``SplitFolderModels``): each worker loads it as it loads the others.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.home import TidemillHome
from pipelines.registry import CHALLENGER, CHAMPION
from pipelines.settings import Settings
from serving.config import Limits, model_name, parse_served
from serving.forecast_model import ForecastModel
from serving.protocol import ForecastRequest
from serving.served_model import ServedModel, load_uri
from serving.split import LocalSplitBackend, Split

log = logging.getLogger(__name__)

BUCKETS = 10_000
CHECK_INTERVAL_S = 0.5


def bucket_of(caller_key: str) -> int:
    """Stable bucket in ``[0, 10000)`` of a caller key (same key, same bucket, any process)."""
    digest = hashlib.blake2b(caller_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def variant_for(caller_key: str, challenger_percent: int) -> str:
    return CHALLENGER if bucket_of(caller_key) < challenger_percent * (BUCKETS // 100) \
        else CHAMPION


@dataclass(frozen=True)
class Routes:
    champion: ServedModel
    challenger: ServedModel | None
    challenger_percent: int
    split: Split


class TidemillRouter(ForecastModel):
    """Champion and challenger behind one endpoint, split by caller key."""

    def __init__(self, name: str, split_path: str, tracking_uri: str,
                 limits: Limits | None = None, log_url: str | None = None) -> None:
        super().__init__(name, limits, log_url)
        self.backend = LocalSplitBackend(split_path)
        self.tracking_uri = tracking_uri
        self.routes: Routes | None = None
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._loading = False
        self._next_check = 0.0
        self._seen_mtime = self._split_mtime()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_lock", "_loading", "_next_check", "_seen_mtime"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()
        if self.routes is not None and self._seen_mtime is not None:
            self._refresh_async(force=self.backend.get() != self.routes.split)

    def _split_mtime(self) -> int | None:
        try:
            return os.stat(self.backend.path).st_mtime_ns
        except FileNotFoundError:
            return None

    # ----- loading --------------------------------------------------------------------------
    def _build(self, split: Split) -> Routes:
        """Routes for ``split``, reusing versions already loaded; each new one is self-tested."""
        loaded = {}
        if self.routes is not None:
            loaded = {m.source_uri: m for m in (self.routes.champion, self.routes.challenger) if m}

        def get(uri: str) -> ServedModel:
            if uri not in loaded:
                served = load_uri(self.tracking_uri, uri)
                served.self_test()
                loaded[uri] = served
            return loaded[uri]

        champion = get(split.champion_uri)
        challenger = get(split.challenger_uri) if split.challenger_uri else None
        if challenger is not None and challenger.task != champion.task:
            raise ValueError(f"challenger {split.challenger_uri} is a {challenger.task} model, "
                             f"champion {split.champion_uri} a {champion.task} model")
        return Routes(champion, challenger, split.challenger_percent if challenger else 0, split)

    def load(self) -> bool:
        """Load both variants of the current split; ready once both answered a test forecast
        (or the champion alone, when the challenger cannot: it never keeps the champion down)."""
        self._seen_mtime = self._split_mtime()
        split = self.backend.get()
        if split is None:
            raise RuntimeError(f"no split state at {self.backend.path}; run serving.stack")
        try:
            self.routes = self._build(split)
        except Exception:
            if split.challenger_uri is None:
                raise
            log.exception("challenger %s failed to load; serving the champion alone",
                          split.challenger_uri)
            self.routes = self._build(Split(split.champion_uri))
        self.ready = True
        self._log_routes()
        return self.ready

    def _log_routes(self) -> None:
        r = self.routes
        log.info("routing %s: champion v%s%s", self.name, r.champion.version,
                 f", challenger v{r.challenger.version} at {r.challenger_percent}%"
                 if r.challenger else "")

    def _refresh_async(self, force: bool = False) -> None:
        mtime = self._split_mtime()
        if (mtime == self._seen_mtime and not force) or mtime is None:
            return
        with self._lock:
            if self._loading:
                return
            self._loading = True
        threading.Thread(target=self._refresh, args=(mtime,), daemon=True,
                         name="split-refresh").start()

    def _refresh(self, mtime: int) -> None:
        try:
            split = self.backend.get()
            if split is not None and (self.routes is None or split != self.routes.split):
                self.routes = self._build(split)
                self._log_routes()
            self._seen_mtime = mtime
        except Exception:
            log.exception("could not apply the new split; still serving the previous one")
            self._seen_mtime = mtime
        finally:
            self._loading = False

    # ----- routing --------------------------------------------------------------------------
    def live(self) -> dict[str, ServedModel]:
        routes = self.routes
        if routes is None:
            return {}
        live = {CHAMPION: routes.champion}
        if routes.challenger is not None:
            live[CHALLENGER] = routes.challenger
        return live

    @property
    def task(self) -> str:
        routes = self.routes
        return routes.champion.task if routes is not None else "forecast"

    def choose(self, request: ForecastRequest, request_id: str) -> tuple[ServedModel, str]:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL_S
            self._refresh_async()
        routes = self.routes
        if routes.challenger is None or routes.challenger_percent == 0:
            return routes.champion, CHAMPION
        if variant_for(request.caller or request_id, routes.challenger_percent) == CHALLENGER:
            return routes.challenger, CHALLENGER
        return routes.champion, CHAMPION


@dataclass(frozen=True)
class SplitFolderModels:
    """Registered models deployed after the router started, found by their split file:
    ``find(name)`` is a loaded router for ``name`` when ``<split_folder>/<name>.json`` exists,
    else None (picklable: it travels to each worker process)."""

    split_folder: str
    tracking_uri: str

    def find(self, name: str) -> TidemillRouter | None:
        if not _REGISTERED_NAME.match(name):
            return None
        path = Path(self.split_folder) / f"{name}.json"
        if not path.is_file():
            return None
        router = TidemillRouter(name, str(path), self.tracking_uri)
        router.load()
        log.info("serving %s, deployed after start (split %s)", name, path)
        return router


_REGISTERED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.router", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=None, help="Tidemill home (registry + split state)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-name", default=model_name(), help="endpoint of a lone model")
    parser.add_argument("--model", action="append", default=[], metavar="REGISTERED[=ENDPOINT]",
                        help="a registered model to route (repeat for several; default: "
                             "$TIDEMILL_REGISTERED_MODEL, else the one split kept in the home)")
    args, _ = parser.parse_known_args(argv)

    from serving.server import TidemillModelServer

    home = TidemillHome.resolve(args.home)
    tracking_uri = Settings.resolve(home).mlflow_tracking_uri
    specs = args.model or [os.environ.get("TIDEMILL_REGISTERED_MODEL") or ""]
    served: list[tuple[str | None, str]] = parse_served(specs, args.model_name) \
        if specs != [""] else [(None, args.model_name)]  # the one split kept in the home
    routers = []
    for registered, endpoint in served:
        router = TidemillRouter(endpoint, str(LocalSplitBackend.for_home(home, registered).path),
                                tracking_uri)
        router.load()
        routers.append(router)
    late = SplitFolderModels(Settings.resolve(home).split_state_url, tracking_uri)
    TidemillModelServer(host=args.host, http_port=args.port, workers=args.workers,
                        default_model=routers[0].name, discover=late.find).start(routers)


if __name__ == "__main__":
    main()
