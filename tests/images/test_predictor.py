"""The predictor image on a registered version's model directory, downloaded from its s3://
storage URI by KServe's storage initializer into the directory mounted at /mnt/models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.prediction_log.reader import logged_windows
from serving.prediction_log.schema import engine_for
from tests.images.conftest import (
    ENDPOINT,
    TIDEMILL_UID,
    Container,
    run_container,
)
from tests.servers import Postgres, free_port
from tests.serving.conftest import wait_for


@pytest.fixture(scope="module")
def predictor(built_images: None, model_dir: Path, postgres: Postgres) -> Iterator[Container]:
    """The ServingRuntime's container: ``python -m serving.predictor`` with the chart's
    TIDEMILL_MODEL_NAME/TIDEMILL_MODEL_DIR, the challenger's TIDEMILL_VARIANT, and the
    prediction log in PostgreSQL."""
    port = free_port()
    server = run_container("predictor", user=TIDEMILL_UID, env={
        "TIDEMILL_MODEL_NAME": ENDPOINT, "TIDEMILL_MODEL_DIR": "/mnt/models",
        "TIDEMILL_VARIANT": "challenger", "TIDEMILL_BIND_HOST": "127.0.0.1",
        "TIDEMILL_PREDICTION_LOG_URL": postgres.url("predictions"),
    }, command=["python", "-m", "serving.predictor", "--port", str(port)],
        volumes=[f"{model_dir}:/mnt/models:ro"], url=f"http://127.0.0.1:{port}")
    try:
        server.wait_http("/v2/health/ready")  # the chart's readinessProbe
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def history(predictor: Container) -> dict[str, Any]:
    return httpx.get(f"{predictor.url}/v1/models/{ENDPOINT}/example").json()["instances"][0]


def test_predictor_answers_v1_v2_and_predict(predictor: Container,
                                             history: dict[str, Any]) -> None:
    assert httpx.get(f"{predictor.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{predictor.url}/v2/models/{ENDPOINT}/ready").json()["ready"] is True
    v1 = httpx.post(f"{predictor.url}/v1/models/{ENDPOINT}:predict",
                    json={"instances": [history]}).json()
    assert (v1["model_version"], v1["variant"]) == ("2", "challenger")
    assert len(v1["predictions"][0]["mean"]) == 12
    n = len(history["values"])
    v2 = httpx.post(f"{predictor.url}/v2/models/{ENDPOINT}/infer", json={"inputs": [
        {"name": "values", "datatype": "FP64", "shape": [1, n], "data": history["values"]},
        {"name": "timestamps", "datatype": "BYTES", "shape": [1, n],
         "data": history["timestamps"]},
    ]})
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == "2"
    data = [[t, v] for t, v in zip(history["timestamps"], history["values"], strict=True)]
    spec = httpx.post(f"{predictor.url}/predict", json={"data": data, "forecast_horizon": 5})
    assert spec.status_code == 200, spec.text
    assert len(spec.json()["predictions"]) == 5
    bad = httpx.post(f"{predictor.url}/v1/models/{ENDPOINT}:predict", json={"instances": [{}]})
    assert bad.status_code == 400


def test_predictor_metrics_and_prediction_log(predictor: Container, postgres: Postgres,
                                              history: dict[str, Any]) -> None:
    for _ in range(3):
        httpx.post(f"{predictor.url}/v1/models/{ENDPOINT}:predict",
                   json={"instances": [history]}).raise_for_status()
    metrics = httpx.get(f"{predictor.url}/metrics").text
    assert 'tidemill_requests_total{' in metrics and 'variant="challenger"' in metrics
    engine = engine_for(postgres.url("predictions"))
    wait_for(lambda: len(logged_windows(engine)) >= 3, timeout=60,
             what="prediction-log rows in PostgreSQL")
    rows = logged_windows(engine)
    assert set(rows["model_version"]) == {"2"} and set(rows["variant"]) == {"challenger"}
    engine.dispose()
