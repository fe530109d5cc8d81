"""MLflow's line cut in the middle of a registration, and the task's retry.

A real ``mlflow server`` (SQLite) sits behind a real TCP proxy that goes down right after the
server has answered the create-model-version request: either the answer is dropped (the
version exists, the client never learned its number) or it is delivered and every later call,
the cleanup delete included, fails. Either way a version is left tagged pending and without
aliases; serving and promotion refuse it, and the retry completes it: exactly one complete
version with the right aliases, no orphan, and a further retry registers nothing new.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.registry import (
    PENDING,
    REGISTRATION_TAG,
    is_complete,
    register_version,
    use_store,
)
from serving.split import LocalSplitBackend, SplitControl, SplitError
from tests.fault_proxy import CuttingProxy
from tests.servers import free_port, kill, mlflow_server

CREATE = b"POST /api/2.0/mlflow/model-versions/create "


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("registration-fault")
    port = free_port()
    proc = mlflow_server(root / "mlflow.db", port, root / "mlflow.log")
    try:
        yield port
    finally:
        kill(proc)


def _log_model(uri: str) -> tuple[str, str]:
    """A logged pyfunc model in a fresh run: (model URI, run id)."""
    use_store(uri)
    mlflow.set_experiment("registration-fault")
    with mlflow.start_run() as run, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant())
    return info.model_uri, run.info.run_id


@pytest.mark.parametrize("deliver", [False, True], ids=["answer-dropped", "answer-delivered"])
def test_retry_after_the_line_is_cut_mid_registration(
    server: int, deliver: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    direct = f"http://127.0.0.1:{server}"
    name = f"cut-{'delivered' if deliver else 'dropped'}"
    admin = MlflowClient(direct, registry_uri=direct)
    first_uri, first_run = _log_model(direct)
    first, _ = register_version(name, first_uri, first_run, {}, admin)
    before = admin.get_registered_model(name).aliases
    assert before == {"champion": first.version, "challenger": first.version}
    model_uri, run_id = _log_model(direct)
    tags = {"tidemill.pipeline_run": "cut"}

    proxy = CuttingProxy(server, CREATE, deliver=deliver)
    try:
        via_proxy = MlflowClient(proxy.url, registry_uri=proxy.url)
        with pytest.raises(MlflowException):
            register_version(name, model_uri, run_id, tags, via_proxy)
        assert proxy.cut.is_set()

        # the server committed the version; the cleanup could not reach it
        versions = {v.version: v for v in admin.search_model_versions(f"name='{name}'")}
        assert sorted(versions) == ["1", "2"]
        orphan = admin.get_model_version(name, "2")
        assert orphan.tags[REGISTRATION_TAG] == PENDING and not orphan.aliases
        assert not is_complete(orphan)
        assert admin.get_registered_model(name).aliases == before
        control = SplitControl(admin, name, LocalSplitBackend(tmp_path / "split.json"))
        with pytest.raises(SplitError, match="not completely registered") as refused:
            control.deploy("2", 10)
        assert refused.value.status == 409
        listed = {v["version"]: v["registration"] for v in control.status()["versions"]}
        assert listed == {"1": "complete", "2": "pending"}

        # the task's retry (a fresh client, the line back up)
        proxy.heal()
        retry = MlflowClient(proxy.url, registry_uri=proxy.url)
        mv, aliases = register_version(name, model_uri, run_id, tags, retry)
    finally:
        proxy.close()

    assert (mv.version, aliases) == ("2", ["challenger"])
    versions = admin.search_model_versions(f"name='{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert all(is_complete(v) and v.status == "READY" for v in versions)
    assert admin.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    done = admin.get_model_version(name, "2")
    assert done.tags["tidemill.pipeline_run"] == "cut" and done.current_stage == "Staging"

    # a retry of a registration that completed registers nothing new
    again, held = register_version(name, model_uri, run_id, tags, admin)
    assert (again.version, held) == ("2", ["challenger"])
    assert len(admin.search_model_versions(f"name='{name}'")) == 2
