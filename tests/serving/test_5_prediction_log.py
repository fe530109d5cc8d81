"""Prediction log: KServe logger CloudEvents sink, and every served prediction written and
complete after a graceful shutdown (test_5: it stops the session stack)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.serving.conftest import ENDPOINT, Stack, predictions_rows, v1


def test_kserve_logger_cloudevents_sink(stack: Stack, client: httpx.Client,
                                        history: dict[str, Any]) -> None:
    request = v1(dict(history, series_id="k8s-series"), user_id="k8s-caller")
    response = client.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=request).json()
    headers = {"ce-id": "ce-req-1", "ce-specversion": "1.0", "ce-source": "kserve-agent",
               "content-type": "application/json"}
    sink = f"{stack.control}/prediction-log"
    first = client.post(sink, content=json.dumps(request), headers={
        **headers, "ce-type": "org.kubeflow.serving.inference.request"})
    assert first.status_code == 202 and first.json()["logged"] is False
    second = client.post(sink, content=json.dumps(response), headers={
        **headers, "ce-type": "org.kubeflow.serving.inference.response"})
    assert second.status_code == 202 and second.json()["logged"] is True
    bad = client.post(sink, content="{}", headers={**headers, "ce-type": "something.else"})
    assert bad.status_code == 400


def test_rows_complete_after_graceful_shutdown(stack: Stack, history: dict[str, Any]) -> None:
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"

    def call(i: int) -> tuple[str, tuple[str, str]]:
        body = v1(dict(history, series_id="ETTh1"), user_id=f"log-{i}",
                  parameters={"horizon": 3})
        answer = httpx.post(url, json=body).json()
        return answer["request_id"], (answer["variant"], answer["model_version"])

    with ThreadPoolExecutor(8) as pool:
        sent = dict(pool.map(call, range(300)))
    assert stack.stop() == 0  # SIGTERM straight after the last answer
    rows = {r["request_id"]: r for r in predictions_rows(stack.home)}
    assert set(sent) <= set(rows), f"{len(set(sent) - set(rows))} of {len(sent)} rows missing"
    for rid, served in sent.items():
        row = rows[rid]
        assert (row["variant"], row["model_version"]) == served
        assert row["caller"].startswith("log-") and row["series_id"] == "ETTh1"
        assert row["history_len"] == len(history["values"])
        assert row["history_last_ds"] == history["timestamps"][-1][:19]
        assert abs(row["history_last"] - history["values"][-1]) < 1e-9
        assert row["window"] == 0 and len(row["yhat"]) == 3
        assert all(len(row[k]) == 3 for k in ("ds", "lower", "upper"))
        assert row["lower"][0] <= row["yhat"][0] <= row["upper"][0]
    logged = rows["ce-req-1"]
    assert logged["caller"] == "k8s-caller" and logged["series_id"] == "k8s-series"
