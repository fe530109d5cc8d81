"""Promotion against a real ``mlflow server`` that is killed in the middle of it: the answer
comes in bounded time, says nothing was committed, and the recorded intent is undone by the
next call once the registry is back (no version left as champion and challenger at once)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.registry import set_alias
from serving.split import PREVIOUS_CHAMPION, LocalSplitBackend, SplitControl, SplitError
from tests.servers import kill, mlflow_server
from tests.serving.conftest import REGISTERED, free_port


class _KilledAfterFirstAliasMove(MlflowClient):
    """A client whose first alias move succeeds, after which the server is SIGKILLed."""

    victim: subprocess.Popen[bytes] | None = None

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        super().set_registered_model_alias(name, alias, version)
        if self.victim is not None:
            kill(self.victim)
            self.victim = None


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The MLflow servers a test starts, killed at its end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        kill(proc)


def test_promotion_with_the_registry_killed_midway(
        trained_home: Path, tmp_path: Path, servers: list[subprocess.Popen[bytes]]) -> None:
    tmp, db, port = tmp_path, tmp_path / "mlflow.db", free_port()
    shutil.copy(trained_home / "mlflow.db", db)
    servers.append(mlflow_server(db, port, tmp / "mlflow.log"))
    uri = f"http://127.0.0.1:{port}"
    plain = MlflowClient(uri, registry_uri=uri)
    set_alias(plain, REGISTERED, "champion", "1")
    set_alias(plain, REGISTERED, "challenger", "2")
    with contextlib.suppress(MlflowException):  # not set in every copy of the registry
        plain.delete_registered_model_alias(REGISTERED, PREVIOUS_CHAMPION)
    backend = LocalSplitBackend(tmp / "serving" / "split.json")
    SplitControl(plain, REGISTERED, backend).sync(30)
    before = SplitControl(plain, REGISTERED, backend).status()
    before_split = backend.path.read_text()

    killing = _KilledAfterFirstAliasMove(uri, registry_uri=uri)
    killing.victim = servers[0]
    started = time.monotonic()
    with pytest.raises(SplitError) as err:
        SplitControl(killing, REGISTERED, backend).promote()
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the failed promotion took {elapsed:.0f} s"
    assert err.value.status == 503, err.value
    assert "nothing is committed" in str(err.value) and "undone" in str(err.value)
    assert backend.path.read_text() == before_split  # the router still serves as before
    assert backend.intent.exists()

    servers.append(mlflow_server(db, port, tmp / "mlflow.log"))
    after = SplitControl(plain, REGISTERED, backend).status()  # the next call undoes it
    assert not backend.intent.exists()
    assert after["aliases"] == before["aliases"] == {
        "champion": "1", "challenger": "2", "previous_champion": None}
    stages = {v["version"]: v["stage"] for v in after["versions"]}
    assert (stages["1"], stages["2"]) == ("Production", "Staging"), stages
    assert backend.path.read_text() == before_split
