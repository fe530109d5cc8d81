"""Champion/challenger traffic split: the one place that changes it, on either backend.

A split is (champion URI, challenger URI or none, challenger percent), the meaning of KServe's
``canaryTrafficPercent``. Backends:

* ``local`` (default): a JSON state file per registered model (``<model>.json`` in the folder
  ``TIDEMILL_SPLIT_STATE_URL``, a local path; default ``serving/splits`` in the Tidemill home),
  URIs ``models:/<name>/<version>``; the local router, on the same machine, re-reads it when
  its mtime changes (no restart).
* ``kubernetes`` (``TIDEMILL_SPLIT_BACKEND=kubernetes``): KServe's own split on the model's
  InferenceService, through ``serving.split_kubernetes.KubernetesSplitBackend``
  (``TIDEMILL_K8S_NAMESPACE``, ``TIDEMILL_DEPLOYMENT_MODE``; the InferenceService of each
  registered model from ``TIDEMILL_ISVC_NAMES``, a JSON object ``{"<model>": "<isvc>"}``, else
  ``TIDEMILL_ISVC_NAME``); URIs are the versions' artifact locations (what ``storageUri``
  mounts). Nothing is kept in the pod.

Each registered model has its own split (its own file, or its own InferenceService): changing
one model's split or aliases never touches another's.

``SplitControl`` moves the registry aliases (``champion``, ``challenger``,
``previous_champion``) and the split together, after the version going live passed a load
and a test prediction. Before anything moves it records its intent (the aliases and split
as they were, an ``IntentRecord``): next to the local split file, or, on Kubernetes, in the
artifact store (``<store>/serving/<isvc>.intent.json``), where every pod that changes the split
(the control API, the promotion and rollback tasks) finds it. If a step fails, it puts
everything back, and if that fails too (the registry is down) the intent stays and is undone
by the next call or at start-up (``recover``), in whichever pod that is: until then the answer
is a 503 that says so. Calls to an MLflow
tracking server are bounded (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 2,
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` 1, ``MLFLOW_HTTP_REQUEST_TIMEOUT`` 10 s unless set):
MLflow's own defaults kept a promotion waiting ~245 s on a dead server. The control API and
the Airflow promotion DAG call only this module; it imports neither airflow nor kserve.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines import artifact_store
from pipelines.home import TidemillHome
from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    COMPLETE,
    REGISTRATION_TAG,
    check_version,
    filter_literal,
    is_complete,
    set_alias,
)
from pipelines.settings import Settings

log = logging.getLogger(__name__)

for _key, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
                     ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                     ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")):
    os.environ.setdefault(_key, _value)

BACKEND_ENV = "TIDEMILL_SPLIT_BACKEND"
ISVC_NAMES_ENV = "TIDEMILL_ISVC_NAMES"
PREVIOUS_CHAMPION = "previous_champion"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)


class SplitError(ValueError):
    """A split change refused; ``status`` is the HTTP status the control API answers with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Split:
    champion_uri: str
    challenger_uri: str | None = None
    challenger_percent: int = 0

    def __post_init__(self) -> None:
        percent = self.challenger_percent
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise SplitError(f"challenger_percent must be an integer 0..100, got {percent!r}", 400)
        if not self.champion_uri:
            raise SplitError("the split needs a champion", 400)
        if self.challenger_uri is None and percent:
            raise SplitError("challenger_percent must be 0 without a challenger", 400)
        if self.challenger_uri is not None and self.challenger_uri == self.champion_uri:
            raise SplitError("the challenger must differ from the champion", 400)


class SplitBackend(Protocol):
    kind: str

    def get(self) -> Split | None: ...

    def apply(self, split: Split) -> None: ...

    def storage_uri(self, client: MlflowClient, name: str, version: str) -> str: ...

    def locked(self) -> contextlib.AbstractContextManager[None]: ...

    intent: IntentRecord


class IntentRecord:
    """The record of a split change in progress, at a URL (a local path or any artifact-store
    URL): what the aliases and the split were, so an interrupted change can be undone. When the
    store cannot be reached each operation raises a 503 naming the URL."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)

    @property
    def name(self) -> str:
        return self.url

    @contextlib.contextmanager
    def _reaching(self, action: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:  # ArtifactStoreError included
            raise SplitError(f"could not {action} the split change record {self.url} "
                             f"({_short(exc)})", 503) from exc

    def exists(self) -> bool:
        with self._reaching("look up"):
            return artifact_store.exists(self.url)

    def read(self) -> dict[str, Any]:
        with self._reaching("read"):
            return json.loads(artifact_store.read_text(self.url))

    def write(self, data: dict[str, Any]) -> None:
        """Replaced atomically; a local file is on disk before this returns."""
        with self._reaching("write"):
            if artifact_store.is_local(self.url):
                _write_json(Path(artifact_store.filesystem(self.url)[1]), data)
            else:
                artifact_store.write_text(self.url, json.dumps(data))

    def clear(self) -> None:
        with self._reaching("remove"):
            artifact_store.delete(self.url)


class LocalSplitBackend:
    """The split as a JSON file, replaced atomically; readers notice the new mtime."""

    kind = "local"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.intent = IntentRecord(self.path.with_name(f"{self.path.stem}.intent.json"))

    @classmethod
    def for_home(cls, home: TidemillHome, model_name: str | None = None) -> LocalSplitBackend:
        """``model_name``'s split file in the settings' split folder (``TIDEMILL_SPLIT_STATE_URL``,
        default in the home); without a name, the one model whose split is kept there."""
        settings = Settings.resolve(home)
        if model_name is None:
            kept = sorted(Path(settings.split_state_url).glob("*.json"))
            kept = [p for p in kept if not p.name.endswith(".intent.json")]
            if len(kept) != 1:
                raise SplitError(f"name the registered model: {len(kept)} splits are kept in "
                                 f"{settings.split_state_url} {[p.stem for p in kept]}", 409)
            return cls(kept[0])
        return cls(settings.split_file(model_name))

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None

    def get(self) -> Split | None:
        state = self.read()
        if state is None:
            return None
        return Split(state["champion_uri"], state.get("challenger_uri"),
                     int(state.get("challenger_percent", 0)))

    def apply(self, split: Split) -> None:
        previous = self.read() or {}
        state = {**asdict(split), "generation": int(previous.get("generation", 0)) + 1,
                 "updated_at": time.time()}
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.path)

    def storage_uri(self, client: MlflowClient, name: str, version: str) -> str:
        return f"models:/{name}/{version}"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class KubernetesBackend:
    """KServe's split on the InferenceService (``serving.split_kubernetes``)."""

    kind = "kubernetes"

    def __init__(self, namespace: str, name: str, mode: str, intent_url: str,
                 api: Any | None = None) -> None:
        from serving.split_kubernetes import KubernetesSplitBackend

        self.k8s = KubernetesSplitBackend(namespace, name, mode, api=api)
        self.intent = IntentRecord(intent_url)

    def get(self) -> Split | None:
        state = self.k8s.get()
        if not state["champion_storage_uri"]:
            return None
        return Split(state["champion_storage_uri"], state["challenger_storage_uri"],
                     int(state["challenger_percent"]))

    def apply(self, split: Split) -> None:
        self.k8s.apply(split.challenger_percent, split.champion_uri, split.challenger_uri)

    def storage_uri(self, client: MlflowClient, name: str, version: str) -> str:
        return client.get_model_version_download_uri(name, version)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield  # one control API replica changes the split; the patch itself is atomic


def isvc_name(model_name: str | None) -> str:
    """The InferenceService serving ``model_name``: its entry in ``TIDEMILL_ISVC_NAMES`` (a JSON
    object, registered model -> InferenceService; a model it does not name is a 404), else,
    with one served model, ``TIDEMILL_ISVC_NAME``."""
    raw = os.environ.get(ISVC_NAMES_ENV)
    if raw:
        try:
            names = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{ISVC_NAMES_ENV} is not JSON: {exc}") from exc
        if not isinstance(names, dict):
            raise ValueError(f"{ISVC_NAMES_ENV} must be a JSON object model -> InferenceService")
        if model_name not in names:
            raise SplitError(f"no InferenceService serves {model_name!r}: {ISVC_NAMES_ENV} "
                             f"names {sorted(names)}", 404)
        return str(names[model_name])
    return os.environ.get("TIDEMILL_ISVC_NAME", "tidemill-forecaster")


def backend_from_env(home: TidemillHome | None = None,
                     model_name: str | None = None) -> SplitBackend:
    """``TIDEMILL_SPLIT_BACKEND``: ``local`` (``model_name``'s state file in the home) or
    ``kubernetes`` (the model's InferenceService; the intent record in the artifact store)."""
    kind = os.environ.get(BACKEND_ENV, "local")
    if kind == "kubernetes":
        name = isvc_name(model_name)
        store = Settings.resolve(home).store
        return KubernetesBackend(
            os.environ.get("TIDEMILL_K8S_NAMESPACE", "default"), name,
            os.environ.get("TIDEMILL_DEPLOYMENT_MODE", "serverless"),
            intent_url=store.url("serving", f"{name}.intent.json"),
        )
    if kind != "local":
        raise ValueError(f"{BACKEND_ENV} must be 'local' or 'kubernetes', got {kind!r}")
    return LocalSplitBackend.for_home(home or TidemillHome.resolve(), model_name)


class SplitControl:
    """Registry aliases and the serving split of one registered model, changed together."""

    def __init__(self, client: MlflowClient, model_name: str, backend: SplitBackend,
                 check: Callable[[str, str, str], None] | None = None) -> None:
        """``check(tracking_uri, model_name, version)`` raises when a version cannot serve
        (default: ``pipelines.registry.check_version``, a pyfunc load and a prediction of its
        input example, which runs in both environments; serving passes
        ``serving.served_model.check_registered``, a load as the router does)."""
        try:
            self.name_literal = filter_literal(model_name, "model_name")
        except ValueError as exc:
            raise SplitError(str(exc), 400) from None
        self.client = client
        self.model_name = model_name
        self.backend = backend
        self.check = check or check_version
        self._lock = threading.Lock()
        self._recovered = False
        self.left_out: str | None = None  # why sync left the challenger out, if it did

    # ----- reading --------------------------------------------------------------------------
    def alias_versions(self) -> dict[str, str | None]:
        found: dict[str, str | None] = dict.fromkeys(ALIASES)
        try:
            aliases = self.client.get_registered_model(self.model_name).aliases
        except MlflowException as exc:
            raise SplitError(f"no registered model {self.model_name!r}", 404) from exc
        for alias, version in (aliases or {}).items():
            if alias in found:
                found[alias] = str(version)
        return found

    def _versions(self) -> list[Any]:
        versions = self.client.search_model_versions(f"name={self.name_literal}")
        return sorted(versions, key=lambda v: int(v.version))

    def _require_version(self, version: str) -> str:
        version = str(version)
        try:
            self.client.get_model_version(self.model_name, version)
        except MlflowException as exc:
            raise SplitError(f"{self.model_name} has no version {version}", 404) from exc
        return version

    def _uri(self, version: str) -> str:
        return self.backend.storage_uri(self.client, self.model_name, version)

    def status(self) -> dict[str, Any]:
        """Registered versions with aliases, and what is live at which weight."""
        if self.backend.intent.exists():
            self.recover()
        versions = self._versions()
        by_uri = {self._uri(v.version): str(v.version) for v in versions}
        split = self.backend.get()
        aliases = self.alias_versions()
        live: list[dict[str, Any]] = []
        if split is not None:
            challenger_weight = split.challenger_percent if split.challenger_uri else 0
            live.append({"variant": CHAMPION, "version": by_uri.get(split.champion_uri),
                         "uri": split.champion_uri, "weight": 100 - challenger_weight})
            if split.challenger_uri:
                live.append({"variant": CHALLENGER, "version": by_uri.get(split.challenger_uri),
                             "uri": split.challenger_uri, "weight": challenger_weight})
        return {
            "model_name": self.model_name,
            "backend": self.backend.kind,
            "aliases": aliases,
            "versions": [
                {"version": str(v.version),
                 "aliases": sorted(a for a, held in aliases.items() if held == str(v.version)),
                 "algorithm": (v.tags or {}).get("tidemill.algorithm"),
                 "val_mae": (v.tags or {}).get("tidemill.val_mae"),
                 "stage": v.current_stage, "created_at_ms": v.creation_timestamp,
                 "registration": (v.tags or {}).get(REGISTRATION_TAG, COMPLETE)}
                for v in versions
            ],
            "live": live,
        }

    # ----- changing -------------------------------------------------------------------------
    def _set_alias(self, alias: str, version: str | None) -> None:
        if version is None:
            try:
                self.client.delete_registered_model_alias(self.model_name, alias)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        elif alias in (CHAMPION, CHALLENGER):
            set_alias(self.client, self.model_name, alias, version)
        else:
            self.client.set_registered_model_alias(self.model_name, alias, version)

    def _archive_unaliased(self, versions: set[str]) -> None:
        for version in versions:
            held = set(self.client.get_model_version(self.model_name, version).aliases or [])
            if not held & {CHAMPION, CHALLENGER}:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.client.transition_model_version_stage(
                        self.model_name, version, "Archived")

    def _verify(self, version: str) -> None:
        """A 409 when ``version``'s registration did not complete (never served), a 422
        naming the failure when it cannot load and forecast."""
        if not is_complete(self.client.get_model_version(self.model_name, version)):
            raise SplitError(
                f"{self.model_name} version {version} is not completely registered "
                f"({REGISTRATION_TAG}=pending): it is never served; the registering task's "
                "retry completes or deletes it", 409)
        try:
            self.check(self.client.tracking_uri, self.model_name, version)
        except MlflowException:
            raise  # the registry itself failed: 503 (control API), not the version
        except Exception as exc:
            raise SplitError(str(exc), 422) from exc

    def _commit(self, aliases: dict[str, str | None], split: Split) -> dict[str, Any]:
        """Move ``aliases`` and apply ``split``, all or nothing (see the module's docstring)."""
        before = self.alias_versions()
        live = self.backend.get()
        self.backend.intent.write({  # a 503 when it cannot be written: nothing moved yet
            "model_name": self.model_name, "aliases": {a: before[a] for a in aliases},
            "split": asdict(live) if live else None, "recorded_at": time.time()})
        try:
            for alias, version in aliases.items():
                self._set_alias(alias, version)
            self.backend.apply(split)
        except Exception as exc:
            log.exception("split change failed; restoring aliases %s", before)
            try:
                self._undo()
            except Exception as undo_exc:
                log.exception("could not undo the split change yet")
                raise SplitError(
                    f"split change failed ({_short(exc)}) and could not be undone yet "
                    f"({_short(undo_exc)}); nothing is committed: the change recorded in "
                    f"{self.backend.intent.name} is undone by the next call or at "
                    "start-up", 503) from exc
            raise SplitError(f"split change failed and was rolled back: {_short(exc)}",
                             502) from exc
        self.backend.intent.clear()
        after = {**before, **aliases}
        serving = {CHAMPION, CHALLENGER}
        demoted = {before[a] for a in serving if before[a]} - {after[a] for a in serving}
        try:
            self._archive_unaliased(demoted)
            return self.status()
        except MlflowException:
            log.warning("change applied; could not mirror archived stage for %s or read the "
                        "status back", demoted, exc_info=True)
            return {"model_name": self.model_name, "backend": self.backend.kind,
                    "aliases": after, "live": asdict(split),
                    "note": "applied; the registry did not answer the status read"}

    def _undo(self) -> None:
        """Put back the aliases and split an interrupted change recorded; forget the intent."""
        intent = self.backend.intent.read()
        for alias, version in intent["aliases"].items():
            self._set_alias(alias, version)
        if intent["split"] is not None:
            split = Split(**intent["split"])
            if self.backend.get() != split:
                self.backend.apply(split)
        self.backend.intent.clear()
        log.warning("undid an interrupted split change of %s: aliases %s, split %s",
                    self.model_name, intent["aliases"], intent["split"])

    def recover(self) -> bool:
        """Undo an interrupted change, if one is recorded (raises while the registry is
        still down); True when there was one."""
        with self._transaction():
            return self._recovered

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Both locks held; an interrupted earlier change undone first."""
        with self._lock, self.backend.locked():
            self._recovered = self.backend.intent.exists()
            if self._recovered:
                self._undo()
            yield

    def deploy(self, version: str, challenger_percent: int) -> dict[str, Any]:
        """Make ``version`` the challenger at ``challenger_percent`` percent of traffic. A
        model that is not served yet (no split) and has no other champion: ``version``
        becomes its champion and serves alone (its first deployment; the percent is moot)."""
        with self._transaction():
            version = self._require_version(version)
            current = self.alias_versions()
            champion = current[CHAMPION]
            if champion in (None, version) and self.backend.get() is None:
                self._verify(version)
                return self._commit({CHAMPION: version}, Split(self._uri(version)))
            if champion is None:
                raise SplitError(f"{self.model_name} has no champion to compare against", 409)
            if version == champion:
                raise SplitError(f"version {version} is already the champion", 409)
            split = Split(self._uri(champion), self._uri(version), challenger_percent)
            self._verify(version)
            return self._commit({CHALLENGER: version}, split)

    def promote(self) -> dict[str, Any]:
        """The challenger becomes champion (100 percent); the old champion is kept as
        ``previous_champion`` for rollback."""
        with self._transaction():
            current = self.alias_versions()
            challenger, champion = current[CHALLENGER], current[CHAMPION]
            if challenger is None or challenger == champion:
                raise SplitError("there is no challenger to promote", 409)
            self._verify(challenger)
            return self._commit(
                {CHAMPION: challenger, CHALLENGER: None, PREVIOUS_CHAMPION: champion},
                Split(self._uri(challenger)),
            )

    def retire_challenger(self) -> dict[str, Any]:
        """Take the challenger out of serving; its version is archived (stage mirrored)."""
        with self._transaction():
            current = self.alias_versions()
            champion, challenger = current[CHAMPION], current[CHALLENGER]
            if challenger is None or champion is None:
                raise SplitError("there is no challenger to retire", 409)
            return self._commit({CHALLENGER: None}, Split(self._uri(champion)))

    def rollback(self, version: str | None = None) -> dict[str, Any]:
        """Champion back to ``version`` (default: ``previous_champion``), challenger removed;
        the replaced champion becomes ``previous_champion`` (a rollback can be undone)."""
        with self._transaction():
            current = self.alias_versions()
            target = self._require_version(version) if version else current[PREVIOUS_CHAMPION]
            if target is None:
                raise SplitError("no previous champion to roll back to; name a version", 409)
            if target == current[CHAMPION]:
                raise SplitError(f"version {target} is already the champion", 409)
            self._verify(target)
            return self._commit(
                {CHAMPION: target, CHALLENGER: None, PREVIOUS_CHAMPION: current[CHAMPION]},
                Split(self._uri(target)),
            )

    def sync(self, default_percent: int) -> Split:
        """Align the split with the registry aliases (keeps the percent when unchanged). A
        challenger that fails its load and test prediction is left out of the split (logged):
        it never keeps the champion from serving."""
        with self._transaction():
            current = self.alias_versions()
            champion, challenger = current[CHAMPION], current[CHALLENGER]
            if champion is None:
                raise SplitError(f"{self.model_name} has no champion version", 409)
            if challenger == champion:
                challenger = None
            if challenger is not None:
                try:
                    self._verify(challenger)
                except SplitError as exc:
                    self.left_out = f"challenger left out of serving: {exc}"
                    log.error(self.left_out)
                    challenger = None
            live = self.backend.get()
            champion_uri = self._uri(champion)
            challenger_uri = self._uri(challenger) if challenger else None
            if live and (live.champion_uri, live.challenger_uri) == (champion_uri, challenger_uri):
                return live
            split = Split(champion_uri, challenger_uri, default_percent if challenger else 0)
            self.backend.apply(split)
            return split


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` in ``path``, replaced atomically and on disk before this returns."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else f"{text[:297]}..."


def control_from_env(
    model_name: str | None = None, home: TidemillHome | None = None
) -> SplitControl:
    """A SplitControl on ``MLFLOW_TRACKING_URI`` (default: the home's registry)."""
    home = home or TidemillHome.resolve()
    uri = Settings.resolve(home).mlflow_tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    name = model_name or only_registered_model(client)
    return SplitControl(client, name, backend_from_env(home, name))


def only_registered_model(client: MlflowClient) -> str:
    """The registered model name when ``TIDEMILL_REGISTERED_MODEL`` is unset and there is one."""
    name = os.environ.get("TIDEMILL_REGISTERED_MODEL")
    if name:
        return name
    names = sorted(m.name for m in client.search_registered_models())
    if len(names) != 1:
        raise SplitError(
            f"name the registered model (model_name, or TIDEMILL_REGISTERED_MODEL): the "
            f"registry holds {len(names)} models {names}", 409
        )
    return names[0]
