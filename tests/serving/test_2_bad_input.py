"""Every bad input gets a 4xx naming the field (and the limit), never a 500, never a log row."""

from __future__ import annotations

import http.client
import json
import math
import struct
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from serving.v1_body import MIN_BYTES
from tests.serving.conftest import ENDPOINT, Stack, predictions_rows, v1


def _post(client: httpx.Client, url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, content=content, headers={"content-type": "application/json",
                                                      "x-user-id": "bad-input-caller"})


def _cases(h: dict[str, Any]) -> list[tuple[str, str, Any, int, list[str]]]:
    """(id, path, body, status, substrings the message must contain)."""
    ts, vals = h["timestamps"], h["values"]
    n = len(vals)
    nan_vals = [*vals[:-1], math.nan]
    swapped = [*ts[:-2], ts[-1], ts[-2]]
    p1 = f"/v1/models/{ENDPOINT}:predict"
    p2 = f"/v2/models/{ENDPOINT}/infer"
    spec = "/predict"

    def v2(values: Any, stamps: Any, shape: list[int], **params: Any) -> dict[str, Any]:
        return {"inputs": [{"name": "values", "datatype": "FP64", "shape": shape, "data": values},
                           {"name": "timestamps", "datatype": "BYTES", "shape": shape,
                            "data": stamps}], "parameters": params}

    return [
        ("v1-no-instances", p1, {"foo": 1}, 400, ["instances"]),
        ("v1-instance-not-object", p1, {"instances": [[1, 2]]}, 400, ["instances[0]"]),
        ("v1-values-nested", p1, v1({"timestamps": ts, "values": [[v] for v in vals]}), 400,
         ["instances[0].values"]),
        ("v1-length-mismatch", p1, v1({"timestamps": ts[:-1], "values": vals}), 400,
         ["instances[0].timestamps", f"{n - 1} timestamps for {n} values"]),
        ("v1-nan", p1, v1({"timestamps": ts, "values": nan_vals}), 400,
         [f"instances[0].values[{n - 1}]", "NaN"]),
        ("v1-inf", p1, v1({"timestamps": ts, "values": [math.inf, *vals[1:]]}), 400,
         ["instances[0].values[0]"]),
        ("v1-not-numbers", p1, v1({"timestamps": ts, "values": ["x"] * n}), 400,
         ["instances[0].values", "numbers"]),
        ("v1-number-beyond-float", p1, v1({"timestamps": ts, "values": [10**400, *vals[1:]]}),
         400, ["instances[0].values", "numbers"]),
        ("v1-out-of-order", p1, v1({"timestamps": swapped, "values": vals}), 400,
         [f"instances[0].timestamps[{n - 1}]", "increasing"]),
        ("v1-duplicate-ts", p1, v1({"timestamps": [ts[0], *ts[:-1]], "values": vals}), 400,
         ["instances[0].timestamps[1]", "increasing"]),
        ("v1-bad-timestamp", p1, v1({"timestamps": ["yesterday"] * n, "values": vals}), 400,
         ["instances[0].timestamps", "ISO-8601"]),
        ("v1-short-history", p1, v1({"timestamps": ts[-10:], "values": vals[-10:]}), 400,
         ["values", "history has 10 values", "needs at least"]),
        ("v1-horizon-above-max", p1, v1(h, parameters={"horizon": 500}), 400,
         ["parameters.horizon", "500", "maximum of 12"]),
        ("v1-horizon-zero", p1, v1(h, parameters={"horizon": 0}), 400,
         ["parameters.horizon", "at least 1"]),
        ("v1-horizon-not-int", p1, v1(h, parameters={"horizon": "soon"}), 400,
         ["parameters.horizon", "integer"]),
        # batches large enough for the simdjson decoder: the error names the same window
        ("v1-large-out-of-order", p1, {"instances": [dict(h)] * 59 + [
            {"timestamps": swapped, "values": vals}]}, 400,
         [f"instances[59].timestamps[{n - 1}]", "increasing"]),
        ("v1-large-values-nested", p1, {"instances": [dict(h)] * 59 + [
            {"timestamps": ts, "values": [[], vals[:2], *vals[2:]]}]}, 400,
         ["instances[59].values", "numbers"]),
        ("v1-large-bad-timestamp", p1, {"instances": [dict(h)] * 59 + [
            {"timestamps": [*ts[:-1], "soon"], "values": vals}]}, 400,
         ["instances[59].timestamps", "ISO-8601"]),
        ("v1-large-length-mismatch", p1, {"instances": [dict(h)] * 59 + [
            {"timestamps": ts, "values": [*vals, 1.0]}]}, 400,
         ["instances[59].timestamps", f"{n} timestamps for {n + 1} values"]),
        ("v1-too-many-windows", p1, {"instances": [{"timestamps": ts[:1], "values": [1]}] * 1001},
         413,
         ["instances", "1001 windows", "limit of 1000"]),
        ("v1-unknown-version", p1, v1(h, model_version="99"), 404,
         ["model_version", "version 99"]),
        ("unknown-model", "/v1/models/nope:predict", v1(h), 404, ["model", "nope"]),
        ("invalid-json", p1, b"{not json", 400, ["body", "JSON"]),
        ("body-too-large", p1, b"[" + b"1," * 600_000 + b"1]", 413,
         ["body", "limit of 1048576 bytes"]),
        ("v2-missing-timestamps", p2, {"inputs": [{"name": "values", "datatype": "FP64",
                                                   "shape": [1, n], "data": vals}]}, 400,
         ["inputs", "timestamps"]),
        ("v2-shape-mismatch", p2, v2(vals, ts, [2, n]), 400, ["inputs.values.data", "shape"]),
        ("v2-nan", p2, v2(nan_vals, ts, [1, n]), 400, ["values", "NaN"]),
        ("v2-out-of-order", p2, v2(vals, swapped, [1, n]), 400, ["timestamps", "increasing"]),
        ("v2-horizon", p2, v2(vals, ts, [1, n], horizon=13), 400,
         ["parameters.horizon", "maximum of 12"]),
        ("v2-unknown-version", p2, v2(vals, ts, [1, n], model_version="7"), 404,
         ["parameters.model_version", "version 7"]),
        ("spec-empty", spec, {"data": []}, 400, ["data"]),
        ("spec-row-shape", spec, {"data": [[ts[0]]]}, 400, ["data[0]"]),
        ("spec-ragged", spec, {"data": [[ts[0], vals[0]], [ts[1], vals[1], 3.0]]}, 400,
         ["data[1]", "columns"]),
        ("spec-nan", spec, {"data": [[t, v] for t, v in zip(ts, nan_vals, strict=True)]}, 400,
         ["data", "NaN"]),
        ("spec-horizon", spec, {"data": [[t, v] for t, v in zip(ts, vals, strict=True)],
                                "forecast_horizon": 99}, 400,
         ["forecast_horizon", "maximum of 12"]),
        ("spec-unknown-version", spec, {"data": [[t, v] for t, v in zip(ts, vals, strict=True)],
                                        "model_version": "42"}, 404, ["model_version", "42"]),
    ]


def test_bad_inputs(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    cases = _cases(history)
    assert len({c[0] for c in cases}) == len(cases)
    assert all(len(json.dumps(c[2])) > MIN_BYTES for c in cases if "-large-" in c[0])
    for case_id, path, body, status, needles in cases:
        resp = _post(client, stack.router + path, body)
        assert resp.status_code == status, f"{case_id}: {resp.status_code} {resp.text[:300]}"
        message = resp.json()["error"]
        for needle in needles:
            assert needle in message, f"{case_id}: {needle!r} not in {message!r}"
    text = client.get(f"{stack.router}/metrics").text
    assert 'tidemill_errors_total{kind="bad_request"' in text
    # a good request afterwards still works and is logged; none of the bad ones were
    ok = client.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=v1(history),
                     headers={"x-user-id": "bad-input-caller"})
    assert ok.status_code == 200
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = [r for r in predictions_rows(stack.home) if r["caller"] == "bad-input-caller"]
        if rows:
            break
        time.sleep(0.2)
    assert [r["request_id"] for r in rows] == [ok.json()["request_id"]]


@pytest.mark.parametrize("header", ["x-user-id", None])
def test_caller_key_header_or_field(stack: Stack, client: httpx.Client,
                                    history: dict[str, Any], header: str | None) -> None:
    body = v1(history) if header else v1(history, user_id="same-key")
    headers = {header: "same-key"} if header else {}
    variants = {client.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=body,
                            headers=headers).json()["variant"] for _ in range(5)}
    assert len(variants) == 1


def test_bad_binary_v2_bodies(stack: Stack, client: httpx.Client) -> None:
    """The V2 binary tensor data extension: every inconsistency between the JSON part, the
    declared sizes and the bytes that follow is a 400 naming the header or field."""
    url = f"{stack.router}/v2/models/{ENDPOINT}/infer"
    values = struct.pack("<3d", 1.0, 2.0, 3.0)
    stamps = struct.pack("<3q", 0, 3600, 7200)

    def post(inputs: list[dict[str, Any]], tail: bytes, length: str | None = None) -> Any:
        head = json.dumps({"inputs": inputs}).encode()
        return client.post(url, content=head + tail, headers={
            "inference-header-content-length": length or str(len(head))})

    def tensor(name: str, datatype: str, size: int) -> dict[str, Any]:
        return {"name": name, "datatype": datatype, "shape": [1, 3],
                "parameters": {"binary_data_size": size}}

    good = [tensor("values", "FP64", 24), tensor("timestamps", "INT64", 24)]
    cases = [
        ("length past the body", post(good, values + stamps, "99999"),
         ["inference-header-content-length", "99999"]),
        ("size past the end", post(good, values + stamps[:8]),
         ["inputs[1].parameters.binary_data_size", "run past"]),
        ("bytes left over", post(good, values + stamps + b"xx"), ["body", "2 bytes"]),
        ("partial values", post([tensor("values", "FP64", 20), tensor("timestamps", "INT64", 28)],
                                values + stamps), ["inputs[0]", "whole number of FP64"]),
        ("unknown datatype", post([tensor("values", "FP128", 24), good[1]], values + stamps),
         ["inputs[0].datatype", "FP128"]),
        ("broken BYTES", post([good[0], tensor("timestamps", "BYTES", 6)],
                              values + b"\x10\x00\x00\x00ab"),
         ["inputs[1].data", "BYTES"]),
        ("not JSON", post(good, values + stamps, "3"), ["body", "not valid JSON"]),
    ]
    for label, resp, needles in cases:
        assert resp.status_code == 400, (label, resp.status_code, resp.text)
        assert all(n in resp.json()["error"] for n in needles), (label, resp.text)
    ok = post(good, values + stamps)  # the same tensors, consistent: refused only for length
    assert ok.status_code == 400 and "history has 3 values" in ok.json()["error"], ok.text


def _hostile_cases(h: dict[str, Any]) -> list[tuple[str, str, bytes, dict[str, str], int,
                                                      list[str]]]:
    """(id, path, raw body, headers, status, substrings of the error): bodies that once got a
    500 (or a 200 with forecasts stamped 1970), as outside clients and fuzzers send them."""
    ts, vals = h["timestamps"], h["values"]
    n = len(vals)
    p1, p2 = f"/v1/models/{ENDPOINT}:predict", f"/v2/models/{ENDPOINT}/infer"
    good = json.dumps(v1(h))
    epochs = [2**62 + 3600 * i for i in range(n)]
    deep_large = b'{"instances": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    assert len(deep_large) >= MIN_BYTES

    def binary(first: int) -> tuple[bytes, dict[str, str]]:
        head = json.dumps({"inputs": [
            {"name": "values", "datatype": "FP64", "shape": [1, n],
             "parameters": {"binary_data_size": 8 * n}},
            {"name": "timestamps", "datatype": "INT64", "shape": [1, n],
             "parameters": {"binary_data_size": 8 * n}}]}).encode()
        tail = struct.pack(f"<{n}d", *vals) + struct.pack(f"<{n}q", *(first + 3600 * i
                                                                      for i in range(n)))
        return head + tail, {"inference-header-content-length": str(len(head)),
                             "content-type": "application/octet-stream"}

    def v2_shape(shape: list[Any]) -> bytes:
        return json.dumps({"inputs": [
            {"name": "values", "datatype": "FP64", "shape": shape, "data": vals},
            {"name": "timestamps", "datatype": "BYTES", "shape": shape, "data": ts}]}).encode()

    json_type = {"content-type": "application/json"}
    cases = [
        ("v1-horizon-nan", p1, good[:-1].encode() + b', "parameters": {"horizon": NaN}}',
         json_type, 400, ["parameters.horizon", "nan"]),
        ("spec-horizon-infinity", "/predict", json.dumps(
            {"data": [[t, v] for t, v in zip(ts, vals, strict=True)]})[:-1].encode()
         + b', "forecast_horizon": Infinity}', json_type, 400, ["forecast_horizon", "inf"]),
        ("deep-5000", p1, b"[" * 5000 + b"]" * 5000, json_type, 400, ["body", "nested"]),
        ("v1-deep-large", p1, deep_large, json_type, 400, ["body", "nested"]),
        ("v2-shape-bool", p2, v2_shape([True, n]), json_type, 400, ["inputs[0].shape"]),
        ("v1-epoch-2**62", p1, json.dumps(v1({"timestamps": epochs, "values": vals})).encode(),
         json_type, 400, ["instances[0].timestamps", "epoch seconds must lie between"]),
        ("v2-binary-epoch-2**62", p2, *binary(2**62), 400,
         ["inputs.timestamps.data", "epoch seconds must lie between", "2262-04-10"]),
        ("v2-binary-epoch--10**13", p2, *binary(-10**13), 400,
         ["inputs.timestamps.data", "epoch seconds must lie between", "1677-09-22"]),
        ("v1-text-plain", p1, good.encode(), {"content-type": "text/plain"}, 415,
         ["content-type", "text/plain"]),
        ("v1-form", p1, good.encode(), {"content-type": "application/x-www-form-urlencoded"},
         415, ["content-type"]),
        ("v1-false-gzip", p1, good.encode(), {**json_type, "content-encoding": "gzip"}, 415,
         ["content-encoding", "gzip"]),
    ]
    return cases


def test_hostile_inputs_get_4xx_and_the_connection_stays_usable(
        stack: Stack, history: dict[str, Any]) -> None:
    """Each refused on one kept-alive connection, and a valid request follows on it."""
    address = urlsplit(stack.router)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    good = json.dumps(v1(history))
    try:
        for case_id, path, body, headers, status, needles in _hostile_cases(history):
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
            assert resp.status == status, f"{case_id}: {resp.status} {text[:300]}"
            message = json.loads(text)["error"]
            for needle in needles:
                assert needle.lower() in message.lower(), f"{case_id}: {needle!r}: {message!r}"
            assert resp.getheader("connection") != "close", case_id
            sock = conn.sock
            conn.request("POST", f"/v1/models/{ENDPOINT}:predict", body=good,
                         headers={"content-type": "application/json"})
            after = conn.getresponse()
            assert after.status == 200, f"after {case_id}: {after.status}"
            after.read()
            assert conn.sock is sock, f"{case_id}: the connection was not kept alive"
    finally:
        conn.close()


def test_repository_load_and_unload_are_off(stack: Stack, client: httpx.Client,
                                            history: dict[str, Any]) -> None:
    """KServe's repository routes would unload the model in one worker, with no token, while
    readiness still said ready: they are not served; every worker keeps answering."""
    for action in ("unload", "load"):
        for _ in range(4):  # new connections: both worker processes
            resp = httpx.post(f"{stack.router}/v2/repository/models/{ENDPOINT}/{action}")
            assert resp.status_code == 404, (action, resp.status_code, resp.text)
    for _ in range(6):
        assert httpx.get(f"{stack.router}/v2/health/ready").status_code == 200
        assert httpx.get(f"{stack.router}/v2/models/{ENDPOINT}/ready").status_code == 200
        ok = httpx.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=v1(history))
        assert ok.status_code == 200, ok.text
