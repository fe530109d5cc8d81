"""Control API: listing, token checks, deploy, A/B test + feedback, promote, rollback, and
registry/split atomicity. Tests run in file order (they change the live split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from pipelines.registry import use_store
from serving.split import LocalSplitBackend, Split, SplitControl, SplitError
from tests.serving.conftest import ENDPOINT, REGISTERED, Stack, start_stack, v1, wait_for

KEYS = [f"ctl-{i}" for i in range(20)]


def _served(stack: Stack, history: dict[str, Any]) -> set[tuple[str, str]]:
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"
    out = set()
    for key in KEYS:
        for _ in range(2):  # new connections: both worker processes
            body = httpx.post(url, json=v1(history, user_id=key)).json()
            out.add((body["variant"], body["model_version"]))
    return out


def _aliases(client: httpx.Client, stack: Stack) -> dict[str, Any]:
    return client.get(f"{stack.control}/models").json()["aliases"]


def test_models_listing(stack: Stack, client: httpx.Client) -> None:
    body = client.get(f"{stack.control}/models").json()
    assert body["model_name"] == REGISTERED
    assert [v["version"] for v in body["versions"]] == ["1", "2"]
    assert body["aliases"]["champion"] == "1" and body["aliases"]["challenger"] == "2"
    live = {e["variant"]: (e["version"], e["weight"]) for e in body["live"]}
    assert live == {"champion": ("1", 70), "challenger": ("2", 30)}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "test-token-123"}])
def test_writes_need_the_token(stack: Stack, client: httpx.Client,
                               headers: dict[str, str]) -> None:
    before = client.get(f"{stack.control}/models").json()
    for path, body in (
        ("/models/deploy", {"version": "2", "canary_percent": 90}),
        ("/models/promote", {}),
        ("/models/rollback", {"version": "2"}),
        ("/ab-tests", {"challenger_version": "2", "split": 50, "duration_minutes": 1}),
        ("/feedback", {"series_id": "ETTh1", "actuals": [{"ds": "2020-01-01T00:00", "y": 1}]}),
    ):
        resp = client.post(f"{stack.control}{path}", json=body, headers=headers)
        assert resp.status_code == 401, (path, resp.text)
    assert client.get(f"{stack.control}/models").json() == before


def test_model_name_is_validated_before_any_filter(stack: Stack, client: httpx.Client) -> None:
    """A name goes into MLflow filter strings only when it cannot change their meaning."""
    for name in ("x'", "x' OR name LIKE '%", 'x"', "x\\"):
        resp = client.get(f"{stack.control}/models", params={"model_name": name})
        assert resp.status_code == 400, (name, resp.status_code, resp.text)
        assert "model_name" in resp.json()["detail"] and "quotes" in resp.json()["detail"]
    resp = client.get(f"{stack.control}/models", params={"model_name": "no-such-model"})
    assert resp.status_code == 404 and "no-such-model" in resp.json()["detail"], resp.text


def test_openapi_declares_the_token_and_the_refusals(stack: Stack, client: httpx.Client) -> None:
    spec = client.get(f"{stack.control}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert [s for s in schemes.values() if s["type"] == "http" and s["scheme"] == "bearer"]
    for path in ("/models/deploy", "/models/promote", "/models/rollback", "/ab-tests",
                 "/feedback"):
        operation = spec["paths"][path]["post"]
        assert operation.get("security"), path
        assert {"400", "401", "404", "409", "415", "503"} <= set(operation["responses"]), path
    assert {"400", "404", "409", "503"} <= set(spec["paths"]["/models"]["get"]["responses"])


def test_bodies_must_be_uncompressed_json(stack: Stack, client: httpx.Client) -> None:
    before = client.get(f"{stack.control}/models").json()
    body = json.dumps({"version": "2", "canary_percent": 90})
    for headers, field in (({"content-type": "text/plain"}, "content-type"),
                           ({"content-type": "application/x-www-form-urlencoded"},
                            "content-type"),
                           ({"content-type": "application/json", "content-encoding": "gzip"},
                            "content-encoding")):
        resp = client.post(f"{stack.control}/models/deploy", content=body,
                           headers={**stack.auth(), **headers})
        assert resp.status_code == 415, (headers, resp.status_code, resp.text)
        assert field in resp.json()["detail"]
    assert client.get(f"{stack.control}/models").json() == before


def test_deploy_refusals(stack: Stack, client: httpx.Client) -> None:
    url = f"{stack.control}/models/deploy"
    assert client.post(url, json={"version": "9", "canary_percent": 10},
                       headers=stack.auth()).status_code == 404
    assert client.post(url, json={"version": "1", "canary_percent": 10},
                       headers=stack.auth()).status_code == 409
    assert client.post(url, json={"version": "2", "canary_percent": 101},
                       headers=stack.auth()).status_code == 422


def test_deploy_moves_traffic(stack: Stack, client: httpx.Client,
                              history: dict[str, Any]) -> None:
    resp = client.post(f"{stack.control}/models/deploy",
                       json={"version": "2", "canary_percent": 100}, headers=stack.auth())
    assert resp.status_code == 200, resp.text
    wait_for(lambda: _served(stack, history) == {("challenger", "2")}, what="100% challenger")


def test_ab_test_with_feedback(stack: Stack, client: httpx.Client,
                               history: dict[str, Any]) -> None:
    resp = client.post(f"{stack.control}/ab-tests", headers=stack.auth(), json={
        "challenger_version": "2", "split": 50, "duration_minutes": 10, "metric": "mae",
        "name": "feedback-test"})
    assert resp.status_code == 201, resp.text
    test = resp.json()
    assert test["status"] == "running" and test["challenger_percent"] == 50
    assert test["name"] == "feedback-test"
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"

    def both_variants() -> list[dict[str, Any]]:
        answers = [client.post(url, json=v1(dict(history, series_id="ETTh1"),
                                            user_id=f"ab-{i}")).json() for i in range(40)]
        return answers if {a["variant"] for a in answers} == {"champion", "challenger"} else []

    answers = wait_for(both_variants, what="50/50 split live")
    by_request = answers[0]
    pred = by_request["predictions"][0]
    fb = client.post(f"{stack.control}/feedback", headers=stack.auth(), json={
        "request_id": by_request["request_id"],
        "actuals": [{"ds": t, "y": m + 1.0} for t, m in zip(pred["timestamps"], pred["mean"],
                                                               strict=True)]})
    assert fb.status_code == 201 and fb.json()["stored"] == 12
    other = next(a for a in answers if a["variant"] != by_request["variant"])
    opred = other["predictions"][0]
    fb = client.post(f"{stack.control}/feedback", headers=stack.auth(), json={
        "series_id": "ETTh1",
        "actuals": [{"ds": t, "y": 20.0} for t in opred["timestamps"]]})
    assert fb.status_code == 201

    def report() -> dict[str, Any] | None:
        body = client.get(f"{stack.control}/ab-tests/feedback-test").json()  # by name
        ok = body["id"] == test["id"] and set(body["errors"]) == {"champion", "challenger"} and \
            all(body["requests"].get(v, {}).get("requests", 0) > 0
                for v in ("champion", "challenger"))
        return body if ok else None

    body = wait_for(report, what="A/B report with errors for both variants")
    assert body["leader"] in {"champion", "challenger"}
    for stats in body["errors"].values():
        assert stats["points"] >= 12 and stats["mae"] >= 0 and 0 <= stats["coverage"] <= 1
    assert client.get(f"{stack.control}/ab-tests/nope").status_code == 404


def test_promote(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    resp = client.post(f"{stack.control}/models/promote", headers=stack.auth())
    assert resp.status_code == 200, resp.text
    assert _aliases(client, stack) == {"champion": "2", "challenger": None,
                                       "previous_champion": "1"}
    wait_for(lambda: _served(stack, history) == {("champion", "2")}, what="v2 as champion")
    assert client.post(f"{stack.control}/models/promote",
                       headers=stack.auth()).status_code == 409


def test_rollback(stack: Stack, client: httpx.Client, history: dict[str, Any]) -> None:
    resp = client.post(f"{stack.control}/models/rollback", headers=stack.auth())
    assert resp.status_code == 200, resp.text
    assert _aliases(client, stack) == {"champion": "1", "challenger": None,
                                       "previous_champion": "2"}
    wait_for(lambda: _served(stack, history) == {("champion", "1")}, what="v1 back as champion")
    named = client.post(f"{stack.control}/models/rollback", json={"version": "1"},
                        headers=stack.auth())
    assert named.status_code == 409  # already the champion


class _BrokenBackend(LocalSplitBackend):
    def apply(self, split: Split) -> None:
        raise OSError("backend unavailable")


def test_registry_and_split_change_together(stack: Stack, client: httpx.Client) -> None:
    uri = f"sqlite:///{stack.home / 'mlflow.db'}"
    mlflow = MlflowClient(uri, registry_uri=uri)
    path = stack.home / "serving" / "splits" / f"{REGISTERED}.json"
    before_split = path.read_text()
    before = _aliases(client, stack)
    control = SplitControl(mlflow, REGISTERED, _BrokenBackend(path))
    with pytest.raises(SplitError) as err:
        control.deploy("2", 40)
    assert err.value.status == 502
    assert _aliases(client, stack) == before
    assert path.read_text() == before_split


def test_a_version_that_cannot_load_never_goes_live(stack: Stack, client: httpx.Client,
                                                    tmp_path: Path) -> None:
    """Version 3 is version 1 with its weights file cut in half. Deploying it (or rolling
    back to it) is refused with a 422 naming the failure, and nothing moves. Registered as
    the challenger behind the API's back, it stays out of the split of a stack started on
    that registry: the champion serves alone."""
    uri = f"sqlite:///{stack.home / 'mlflow.db'}"
    registry = MlflowClient(uri, registry_uri=uri)
    use_store(uri)
    copy = Path(mlflow.artifacts.download_artifacts(f"models:/{REGISTERED}/1",
                                                    dst_path=str(tmp_path / "v3")))
    weights = copy / "artifacts" / "bundle" / "forecaster" / "nlinear.npz"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    bad = str(registry.create_model_version(REGISTERED, source=str(copy)).version)
    split_file = stack.home / "serving" / "splits" / f"{REGISTERED}.json"
    before, before_split = client.get(f"{stack.control}/models").json(), split_file.read_text()
    try:
        for path, body in (("/models/deploy", {"version": bad, "canary_percent": 50}),
                           ("/models/rollback", {"version": bad})):
            resp = client.post(f"{stack.control}{path}", json=body, headers=stack.auth())
            assert resp.status_code == 422, (path, resp.status_code, resp.text)
            detail = resp.json()["detail"]
            assert f"version {bad} failed its load and test prediction" in detail, detail
        after = client.get(f"{stack.control}/models").json()
        assert after["aliases"] == before["aliases"] and after["live"] == before["live"]
        assert {v["version"]: v["stage"] for v in after["versions"]}[bad] == "None"
        assert split_file.read_text() == before_split

        home = tmp_path / "home"
        home.mkdir()
        shutil.copy(stack.home / "mlflow.db", home / "mlflow.db")
        copied_uri = f"sqlite:///{home / 'mlflow.db'}"
        copied = MlflowClient(copied_uri, registry_uri=copied_uri)
        copied.set_registered_model_alias(REGISTERED, "challenger", bad)
        second = start_stack(home, 30, tmp_path / "stack.log")
        try:
            live = httpx.get(f"{second.control}/models").json()["live"]
            assert [e["variant"] for e in live] == ["champion"], live
            history = httpx.get(f"{second.router}/v1/models/{ENDPOINT}/example").json()
            for key in ("a", "b", "c", "d"):
                resp = httpx.post(f"{second.router}/v1/models/{ENDPOINT}:predict",
                                  json=v1(history["instances"][0], user_id=key))
                assert resp.status_code == 200 and resp.json()["variant"] == "champion"
        finally:
            assert second.stop() == 0
        assert "challenger left out of serving" in (tmp_path / "stack.log").read_text()
    finally:
        registry.delete_model_version(REGISTERED, bad)
