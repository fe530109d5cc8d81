"""The control API image (token, health) changing the split a router container serves.

The chart's control API patches the InferenceService (TIDEMILL_SPLIT_BACKEND=kubernetes), which
needs a cluster; here it runs the local backend, whose split state lives in a volume the router
(``python -m serving.router`` in the predictor image) shares, both on the MLflow container's
registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.images.conftest import (
    ENDPOINT,
    REGISTERED,
    TIDEMILL_UID,
    TOKEN,
    Container,
    run_container,
    writable_dir,
)
from tests.servers import Postgres, free_port
from tests.serving.conftest import wait_for

HOME = "/var/lib/tidemill"


@pytest.fixture(scope="module")
def shared_home() -> Iterator[str]:
    path = writable_dir("tidemill-images-home-", TIDEMILL_UID)
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def control(built_images: None, registered: str, postgres: Postgres,
            shared_home: str) -> Iterator[Container]:
    port = free_port()
    server = run_container("control-api", user=TIDEMILL_UID, env={
        "TIDEMILL_CONTROL_TOKEN": TOKEN,
        "TIDEMILL_PREDICTION_LOG_URL": postgres.url("predictions"),
        "MLFLOW_TRACKING_URI": registered,
        "TIDEMILL_SPLIT_BACKEND": "local", "TIDEMILL_HOME": HOME,
        "TIDEMILL_REGISTERED_MODEL": REGISTERED,
    }, command=["uvicorn", "serving.control_api:app", "--host", "127.0.0.1", "--port", str(port)],
        volumes=[f"{shared_home}:{HOME}"], url=f"http://127.0.0.1:{port}")
    try:
        server.wait_http("/readyz")  # the chart's readinessProbe
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def router(control: Container, registered: str, shared_home: str) -> Iterator[Container]:
    """The router starts on the split the control API wrote: version 2 deployed at 0 %."""
    deploy = httpx.post(f"{control.url}/models/deploy", timeout=60, json={
        "version": "2", "canary_percent": 0}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert deploy.status_code == 200, deploy.text
    port = free_port()
    server = run_container("predictor", user=TIDEMILL_UID, env={
        "MLFLOW_TRACKING_URI": registered, "TIDEMILL_REGISTERED_MODEL": REGISTERED,
        "TIDEMILL_MODEL_NAME": ENDPOINT,
    }, command=["python", "-m", "serving.router", "--home", HOME, "--port", str(port),
                "--workers", "1"], volumes=[f"{shared_home}:{HOME}"],
        url=f"http://127.0.0.1:{port}")
    try:
        server.wait_http(f"/v2/models/{ENDPOINT}/ready")
        yield server
    finally:
        server.stop()


def served(router: Container) -> dict[str, Any]:
    history = httpx.get(f"{router.url}/v1/models/{ENDPOINT}/example").json()["instances"][0]
    return httpx.post(f"{router.url}/v1/models/{ENDPOINT}:predict",
                      json={"instances": [history]}, timeout=30).json()


def test_control_api_health_and_token(control: Container) -> None:
    assert httpx.get(f"{control.url}/healthz").status_code == 200
    versions = httpx.get(f"{control.url}/models").json()
    assert {str(v["version"]) for v in versions["versions"]} >= {"1", "2"}
    body = {"version": "2", "canary_percent": 50}
    assert httpx.post(f"{control.url}/models/deploy", json=body).status_code == 401
    wrong = httpx.post(f"{control.url}/models/deploy", json=body,
                       headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert 'tidemill' in httpx.get(f"{control.url}/metrics").text


def test_split_change_reaches_the_router_container(control: Container,
                                                   router: Container) -> None:
    before = served(router)
    assert (before["model_version"], before["variant"]) == ("1", "champion")
    change = httpx.post(f"{control.url}/models/deploy", timeout=60, json={
        "version": "2", "canary_percent": 100}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert change.status_code == 200, change.text
    after = wait_for(lambda: (body := served(router))["model_version"] == "2" and body,
                     timeout=60, what="the router serving version 2")
    assert after["variant"] == "challenger"
