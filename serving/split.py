"""Champion/challenger traffic split: the one place that changes it, on either backend.

A split is (champion URI, challenger URI or none, challenger percent), the meaning of KServe's
``canaryTrafficPercent``. Backends:

* ``local`` (default): a JSON state file in the Tidemill home (``serving/split.json``), URIs
  ``models:/<name>/<version>``; the local router re-reads it on change (no restart).
* ``kubernetes`` (``TIDEMILL_SPLIT_BACKEND=kubernetes``): KServe's own split on the
  InferenceService, through ``serving.split_kubernetes.KubernetesSplitBackend``
  (``TIDEMILL_K8S_NAMESPACE``, ``TIDEMILL_ISVC_NAME``, ``TIDEMILL_DEPLOYMENT_MODE``); URIs are
  the versions' artifact locations (what ``storageUri`` mounts).

``SplitControl`` moves the registry aliases (``champion``, ``challenger``,
``previous_champion``) and the split together: if the split cannot be applied, the aliases are
put back. The control API and the Airflow promotion DAG call only this module; it imports
neither airflow nor kserve.
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.home import TidemillHome
from pipelines.registry import CHALLENGER, CHAMPION, set_alias

log = logging.getLogger(__name__)

BACKEND_ENV = "TIDEMILL_SPLIT_BACKEND"
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


class LocalSplitBackend:
    """The split as a JSON file, replaced atomically; readers notice the new mtime."""

    kind = "local"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_home(cls, home: TidemillHome) -> LocalSplitBackend:
        return cls(home.root / "serving" / "split.json")

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

    def __init__(self, namespace: str, name: str, mode: str, api: Any | None = None) -> None:
        from serving.split_kubernetes import KubernetesSplitBackend

        self.k8s = KubernetesSplitBackend(namespace, name, mode, api=api)

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


def backend_from_env(home: TidemillHome | None = None) -> SplitBackend:
    """``TIDEMILL_SPLIT_BACKEND``: ``local`` (state file in the home) or ``kubernetes``."""
    kind = os.environ.get(BACKEND_ENV, "local")
    if kind == "kubernetes":
        return KubernetesBackend(
            os.environ.get("TIDEMILL_K8S_NAMESPACE", "default"),
            os.environ.get("TIDEMILL_ISVC_NAME", "tidemill-forecaster"),
            os.environ.get("TIDEMILL_DEPLOYMENT_MODE", "serverless"),
        )
    if kind != "local":
        raise ValueError(f"{BACKEND_ENV} must be 'local' or 'kubernetes', got {kind!r}")
    return LocalSplitBackend.for_home(home or TidemillHome.resolve())


class SplitControl:
    """Registry aliases and the serving split of one registered model, changed together."""

    def __init__(self, client: MlflowClient, model_name: str, backend: SplitBackend) -> None:
        self.client = client
        self.model_name = model_name
        self.backend = backend
        self._lock = threading.Lock()

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
        versions = self.client.search_model_versions(f"name='{self.model_name}'")
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
                 "stage": v.current_stage, "created_at_ms": v.creation_timestamp}
                for v in versions
            ],
            "live": live,
        }

    # ----- changing -------------------------------------------------------------------------
    def _set_alias(self, alias: str, version: str | None) -> None:
        if version is None:
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model_alias(self.model_name, alias)
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

    def _commit(self, aliases: dict[str, str | None], split: Split) -> dict[str, Any]:
        """Move ``aliases`` and apply ``split``, all or nothing."""
        before = self.alias_versions()
        try:
            for alias, version in aliases.items():
                self._set_alias(alias, version)
            self.backend.apply(split)
        except Exception as exc:
            log.exception("split change failed; restoring aliases %s", before)
            for alias in aliases:
                try:
                    self._set_alias(alias, before[alias])
                except Exception:
                    log.exception("could not restore alias %s -> %s", alias, before[alias])
            raise SplitError(f"split change failed and was rolled back: {exc}", 502) from exc
        after = {**before, **aliases}
        serving = {CHAMPION, CHALLENGER}
        demoted = {before[a] for a in serving if before[a]} - {after[a] for a in serving}
        try:
            self._archive_unaliased(demoted)
        except MlflowException:
            log.warning("could not mirror archived stage for %s", demoted, exc_info=True)
        return self.status()

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        stack = contextlib.ExitStack()
        stack.enter_context(self._lock)
        stack.enter_context(self.backend.locked())
        return stack

    def deploy(self, version: str, challenger_percent: int) -> dict[str, Any]:
        """Make ``version`` the challenger at ``challenger_percent`` percent of traffic."""
        with self._transaction():
            version = self._require_version(version)
            current = self.alias_versions()
            champion = current[CHAMPION]
            if champion is None:
                raise SplitError(f"{self.model_name} has no champion to compare against", 409)
            if version == champion:
                raise SplitError(f"version {version} is already the champion", 409)
            split = Split(self._uri(champion), self._uri(version), challenger_percent)
            return self._commit({CHALLENGER: version}, split)

    def promote(self) -> dict[str, Any]:
        """The challenger becomes champion (100 percent); the old champion is kept as
        ``previous_champion`` for rollback."""
        with self._transaction():
            current = self.alias_versions()
            challenger, champion = current[CHALLENGER], current[CHAMPION]
            if challenger is None or challenger == champion:
                raise SplitError("there is no challenger to promote", 409)
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
            return self._commit(
                {CHAMPION: target, CHALLENGER: None, PREVIOUS_CHAMPION: current[CHAMPION]},
                Split(self._uri(target)),
            )

    def sync(self, default_percent: int) -> Split:
        """Align the split with the registry aliases (keeps the percent when unchanged)."""
        with self._transaction():
            current = self.alias_versions()
            champion, challenger = current[CHAMPION], current[CHALLENGER]
            if champion is None:
                raise SplitError(f"{self.model_name} has no champion version", 409)
            if challenger == champion:
                challenger = None
            live = self.backend.get()
            champion_uri = self._uri(champion)
            challenger_uri = self._uri(challenger) if challenger else None
            if live and (live.champion_uri, live.challenger_uri) == (champion_uri, challenger_uri):
                return live
            split = Split(champion_uri, challenger_uri, default_percent if challenger else 0)
            self.backend.apply(split)
            return split


def control_from_env(
    model_name: str | None = None, home: TidemillHome | None = None
) -> SplitControl:
    """A SplitControl on ``MLFLOW_TRACKING_URI`` (default: the home's registry)."""
    home = home or TidemillHome.resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or home.mlflow_uri
    client = MlflowClient(uri, registry_uri=uri)
    return SplitControl(client, model_name or only_registered_model(client), backend_from_env(home))


def only_registered_model(client: MlflowClient) -> str:
    """The registered model name when ``TIDEMILL_REGISTERED_MODEL`` is unset and there is one."""
    name = os.environ.get("TIDEMILL_REGISTERED_MODEL")
    if name:
        return name
    names = sorted(m.name for m in client.search_registered_models())
    if len(names) != 1:
        raise SplitError(
            f"set TIDEMILL_REGISTERED_MODEL: the registry holds {len(names)} models {names}", 409
        )
    return names[0]
