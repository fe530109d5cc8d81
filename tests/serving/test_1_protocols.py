"""V1, V2 and /predict round trips, metadata, readiness and metrics on the real stack, and the
Kubernetes predictor (``python -m serving.predictor``) on a model directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipelines.registry import use_store
from serving.v1_body import MIN_BYTES
from tests.serving.conftest import ENDPOINT, REGISTERED, Stack, free_port, v1


def test_v1_round_trip(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    resp = client.post(f"{stack.router}/v1/models/{ENDPOINT}:predict",
                       json=v1(history, parameters={"horizon": 6}, user_id="alice"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    pred = body["predictions"][0]
    assert len(pred["mean"]) == len(pred["lower"]) == len(pred["upper"]) == 6
    assert all(lo <= m <= hi for lo, m, hi in zip(pred["lower"], pred["mean"], pred["upper"],
                                                  strict=True))
    assert pred["timestamps"][0] > history["timestamps"][-1]
    assert body["model_name"] == REGISTERED
    assert body["model_version"] in {"1", "2"}
    assert body["variant"] in {"champion", "challenger"}
    assert resp.headers["x-tidemill-variant"] == body["variant"]
    assert body["request_id"] == resp.headers["x-request-id"]


def test_v1_batch_keeps_order(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    shifted = {**history, "values": [v + 10 for v in history["values"]], "series_id": "b"}
    body = {"instances": [dict(history, series_id="a"), shifted], "user_id": "bob"}
    preds = client.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=body).json()
    first, second = preds["predictions"]
    assert (first["series_id"], second["series_id"]) == ("a", "b")
    assert second["mean"][0] > first["mean"][0]


def test_v1_large_batch_answers_as_small_ones(stack: Stack, client: httpx.Client,
                                              history: dict[str, Any]) -> None:
    """A batch large enough for the simdjson decoder (``serving/v1_body.py``) is answered
    exactly as the same windows in batches small enough for orjson's path."""
    windows = [dict(history, values=[v + i for v in history["values"]], series_id=f"s{i}")
               for i in range(60)]
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"

    def post(part: list[dict[str, Any]], fast: bool) -> list[dict[str, Any]]:
        raw = json.dumps({"instances": part, "parameters": {"horizon": 3}, "user_id": "dora"},
                         separators=(",", ":")).encode()
        assert (len(raw) >= MIN_BYTES) is fast
        resp = client.post(url, content=raw, headers={"content-type": "application/json"})
        assert resp.status_code == 200, resp.text
        return resp.json()["predictions"]

    small = [p for i in range(0, 60, 4) for p in post(windows[i:i + 4], fast=False)]
    assert post(windows, fast=True) == small
    assert [p["series_id"] for p in small] == [f"s{i}" for i in range(60)]


def v2_body(history: dict[str, Any], **params: Any) -> dict[str, Any]:
    n = len(history["values"])
    return {
        "inputs": [
            {"name": "values", "datatype": "FP64", "shape": [1, n], "data": history["values"]},
            {"name": "timestamps", "datatype": "BYTES", "shape": [1, n],
             "data": history["timestamps"]},
        ],
        "parameters": params,
    }


def test_v2_round_trip(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    resp = client.post(f"{stack.router}/v2/models/{ENDPOINT}/infer",
                       json=v2_body(history, horizon=4, user_id="carol"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"forecast", "lower", "upper", "timestamps"}
    assert outputs["forecast"]["shape"] == [1, 4] and len(outputs["forecast"]["data"]) == 4
    assert outputs["timestamps"]["datatype"] == "BYTES"
    assert body["model_name"] == ENDPOINT
    assert body["model_version"] in {"1", "2"}
    assert body["parameters"]["variant"] in {"champion", "challenger"}
    assert body["parameters"]["registered_model"] == REGISTERED


def test_v2_binary_tensors_from_a_kserve_client(stack: Stack, client: httpx.Client,
                                                 history: dict[str, Any]) -> None:
    """A request encoded by kserve's own client types with the binary tensor data extension
    (FP64 values; timestamps as BYTES, then as INT64 epoch seconds) gets the forecasts the
    same request gets in JSON."""
    import numpy as np
    from kserve.protocol.infer_type import InferInput, InferRequest

    n = len(history["values"])
    url = f"{stack.router}/v2/models/{ENDPOINT}/infer"
    params = {"horizon": 4, "user_id": "carol"}
    as_json = client.post(url, json=v2_body(history, **params)).json()
    expected = {o["name"]: o["data"] for o in as_json["outputs"]}
    epochs = np.asarray(history["timestamps"], "datetime64[s]").astype(np.int64)
    for datatype, stamps in (("BYTES", np.asarray([history["timestamps"]], dtype=object)),
                             ("INT64", epochs[None, :])):
        values = InferInput("values", [1, n], "FP64")
        values.set_data_from_numpy(np.asarray([history["values"]]), binary_data=True)
        times = InferInput("timestamps", [1, n], datatype)
        times.set_data_from_numpy(stamps, binary_data=True)
        body, json_length = InferRequest(ENDPOINT, [values, times], parameters=params).to_rest()
        assert isinstance(body, bytes) and json_length is not None  # binary data sent
        resp = client.post(url, content=body, headers={
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(json_length)})
        assert resp.status_code == 200, (datatype, resp.text)
        got = {o["name"]: o["data"] for o in resp.json()["outputs"]}
        assert got == expected, datatype
        assert resp.json()["model_version"] == as_json["model_version"]


def test_spec_predict(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    data = [[t, v] for t, v in zip(history["timestamps"], history["values"], strict=True)]
    resp = client.post(f"{stack.router}/predict",
                       json={"data": data, "model_version": None, "forecast_horizon": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["predictions"]) == 5
    ci = body["confidence_intervals"]
    assert len(ci["lower"]) == len(ci["upper"]) == 5 and 0 < ci["level"] < 1
    assert body["model_version"] in {"1", "2"} and body["execution_time_ms"] >= 0


def test_spec_predict_pins_version(stack: Stack, client: httpx.Client,
                                   history: dict[str, Any]) -> None:
    data = [[t, v, 1.0] for t, v in zip(history["timestamps"], history["values"], strict=True)]
    for version in ("1", "2"):
        body = client.post(f"{stack.router}/predict",
                           json={"data": data, "model_version": version}).json()
        assert body["model_version"] == version
        assert len(body["predictions"]) == 12


def test_metadata_readiness_and_metrics(stack: Stack, client: httpx.Client) -> None:
    meta = client.get(f"{stack.router}/v2/models/{ENDPOINT}").json()
    assert meta["name"] == ENDPOINT and set(meta["versions"]) == {"1", "2"}
    assert {i["name"] for i in meta["inputs"]} >= {"values", "timestamps"}
    assert client.get(f"{stack.router}/v2/models/{ENDPOINT}/ready").json()["ready"] is True
    assert client.get(f"{stack.router}/v1/models/{ENDPOINT}").json()["ready"] is True
    assert client.get(f"{stack.router}/v2/health/live").status_code == 200
    text = client.get(f"{stack.router}/metrics").text
    for name in ("tidemill_requests_total", "tidemill_request_latency_seconds_bucket",
                 "tidemill_prediction_value_bucket"):
        assert name in text
    assert 'variant="champion"' in text
    control = client.get(f"{stack.control}/metrics").text
    assert "tidemill_prediction_log_queue_depth" in control
    assert client.get(f"{stack.control}/healthz").status_code == 200
    assert client.get(f"{stack.control}/readyz").status_code == 200
    assert client.get(f"{stack.control}/docs").status_code == 200


def test_servers_bind_loopback_only(stack: Stack) -> None:
    port = int(stack.router.rsplit(":", 1)[1])
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    listeners = [line.split()[3] for line in out.splitlines() if line.split()[3].endswith(
        f":{port}")]
    assert listeners and set(listeners) == {f"127.0.0.1:{port}"}  # one socket per worker


@pytest.fixture(scope="module")
def predictor(trained_home: Any) -> Iterator[str]:
    """``python -m serving.predictor`` on version 2's model directory (the storageUri layout)."""
    import mlflow

    use_store(f"sqlite:///{trained_home / 'mlflow.db'}")  # tracking and registry
    model_dir = mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}/2")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    env.update({"TIDEMILL_MODEL_DIR": model_dir, "TIDEMILL_VARIANT": "challenger"})
    proc = subprocess.Popen([sys.executable, "-m", "serving.predictor", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v2/models/{ENDPOINT}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "predictor did not start"
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_kubernetes_predictor_from_model_dir(predictor: str, history: dict[str, Any]) -> None:
    body = httpx.post(f"{predictor}/v1/models/{ENDPOINT}:predict", json=v1(history)).json()
    assert (body["model_version"], body["variant"]) == ("2", "challenger")
    v2 = httpx.post(f"{predictor}/v2/models/{ENDPOINT}/infer",
                    json={"inputs": [
                        {"name": "values", "datatype": "FP64",
                         "shape": [1, len(history["values"])], "data": history["values"]},
                        {"name": "timestamps", "datatype": "BYTES",
                         "shape": [1, len(history["values"])], "data": history["timestamps"]},
                    ]})
    assert v2.status_code == 200 and v2.json()["model_version"] == "2"


def test_kserve_model_predict_path(trained_home: Any, history: dict[str, Any]) -> None:
    """``kserve.Model.predict`` (the stock data plane: gRPC, transformers) with V1 dicts and
    V2 ``InferRequest`` objects gives the same forecasts as the REST routes."""
    import asyncio

    import mlflow
    import numpy as np
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from serving.forecast_model import TidemillPredictor

    use_store(f"sqlite:///{trained_home / 'mlflow.db'}")
    model = TidemillPredictor(ENDPOINT, mlflow.artifacts.download_artifacts(
        f"models:/{REGISTERED}/1"), log_url="")
    assert model.load() and model.ready
    as_dict = asyncio.run(model.predict(v1(history, parameters={"horizon": 3})))
    n = len(history["values"])
    values = InferInput("values", [1, n], "FP64")
    values.set_data_from_numpy(np.asarray([history["values"]]), binary_data=False)
    stamps = InferInput("timestamps", [1, n], "BYTES")
    stamps.set_data_from_numpy(np.asarray([history["timestamps"]], dtype=object),
                               binary_data=False)
    request = InferRequest(ENDPOINT, [values, stamps], parameters={"horizon": 3})
    response = asyncio.run(model.predict(request))
    forecast = response.outputs[0].as_numpy().ravel().tolist()
    assert forecast == list(as_dict["predictions"][0]["mean"])
    assert response.model_version == "1"
    with pytest.raises(InvalidInput, match=r"parameters\.horizon"):
        asyncio.run(model.predict(v1(history, parameters={"horizon": 99})))
