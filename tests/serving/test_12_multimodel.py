"""Two registered models served side by side by one real local stack, each with its own split:
a forecaster (ETTh1, seasonal naive over 24 then 12 hours) and a classifier (AI4I, logistic
regression then a decision tree), both trained by the real pipelines into one home. Changing
one model's split or aliases leaves the other's alone; each answers from its own versions;
prediction-log rows and metrics name their model."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from serving.prediction_log.schema import engine_for, prediction_requests
from serving.router import variant_for
from tests.serving.conftest import (
    CONFIG,
    REPO,
    TABULAR_FEATURES,
    TIDEMILL,
    Stack,
    _tabular_config,
    start_stack,
    wait_for,
)

FORECASTER, CLASSIFIER = "mm-forecaster", "mm-classifier"
FC_ENDPOINT, CLS_ENDPOINT = "fc", "cls"


def _train(root: Path, name: str, config: dict[str, Any], algorithm: str) -> None:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    subprocess.run(
        [str(TIDEMILL), "train", "--config", str(path), "--home", str(root / "home"),
         "--trials", "1", "--algorithms", algorithm],
        cwd=root, env=env, check=True, capture_output=True, timeout=300,
    )


@pytest.fixture(scope="module")
def two_models_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1 (champion) and 2 (challenger) of each model, in one home."""
    root = tmp_path_factory.mktemp("multimodel-home")
    for season in (24, 12):
        config = {**CONFIG, "algorithms": {"seasonal_naive": {"params": {"season": season}}},
                  "mlflow": {"experiment": "multimodel", "registered_model_name": FORECASTER}}
        _train(root, f"fc-{season}", config, "seasonal_naive")
    config = _tabular_config()
    config["mlflow"] = {"experiment": "multimodel", "registered_model_name": CLASSIFIER}
    for algorithm in ("logistic_regression", "decision_tree"):
        _train(root, f"cls-{algorithm}", config, algorithm)
    return root / "home"


@pytest.fixture(scope="module")
def stack(two_models_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("logs") / "multimodel-stack.log"
    running = start_stack(two_models_home, 50, log, (
        "--model", f"{FORECASTER}={FC_ENDPOINT}", "--model", f"{CLASSIFIER}={CLS_ENDPOINT}"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def history(stack: Stack, http: httpx.Client) -> dict[str, Any]:
    return http.get(f"{stack.router}/v1/models/{FC_ENDPOINT}/example").json()["instances"][0]


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig").iloc[3000:3040]
    return frame[TABULAR_FEATURES].to_dict("records")


def _split_file(home: Path, model: str) -> Path:
    return home / "serving" / "splits" / f"{model}.json"


def _status(stack: Stack, http: httpx.Client, model: str) -> dict[str, Any]:
    resp = http.get(f"{stack.control}/models", params={"model_name": model})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _forecasts(stack: Stack, http: httpx.Client, history: dict[str, Any],
               callers: list[str]) -> dict[str, dict[str, Any]]:
    url = f"{stack.router}/v1/models/{FC_ENDPOINT}:predict"
    out = {}
    for caller in callers:
        resp = http.post(url, json={"instances": [history], "user_id": caller})
        assert resp.status_code == 200, resp.text
        out[caller] = resp.json()
    return out


def _classes(stack: Stack, http: httpx.Client, records: list[dict[str, Any]],
             callers: list[str]) -> dict[str, dict[str, Any]]:
    url = f"{stack.router}/v1/models/{CLS_ENDPOINT}:predict"
    out = {}
    for caller, record in zip(callers, records, strict=False):
        resp = http.post(url, json={"instances": [record], "user_id": caller})
        assert resp.status_code == 200, resp.text
        out[caller] = resp.json()
    return out


def _log_rows(home: Path) -> dict[str, Any]:
    with engine_for(f"sqlite:///{home / 'prediction_log.db'}").connect() as conn:
        return {row.request_id: row for row in conn.execute(select(prediction_requests))}


CALLERS = [f"user-{i}" for i in range(40)]


def test_each_model_starts_on_its_own_split(stack: Stack, http: httpx.Client) -> None:
    info = json.loads((stack.home / "serving" / "stack.json").read_text())
    assert [(m["registered_model"], m["endpoint"]) for m in info["models"]] == [
        (FORECASTER, FC_ENDPOINT), (CLASSIFIER, CLS_ENDPOINT)]
    for model in (FORECASTER, CLASSIFIER):
        status = _status(stack, http, model)
        assert status["aliases"]["champion"] == "1" and status["aliases"]["challenger"] == "2"
        assert {e["version"]: e["weight"] for e in status["live"]} == {"1": 50, "2": 50}
        split = json.loads(_split_file(stack.home, model).read_text())
        assert split["champion_uri"] == f"models:/{model}/1"
    unnamed = http.get(f"{stack.control}/models")  # two registered: the caller must say which
    assert unnamed.status_code == 409 and "model_name" in unnamed.json()["detail"]
    assert FORECASTER in unnamed.json()["detail"] and CLASSIFIER in unnamed.json()["detail"]


def test_each_model_answers_from_its_own_versions(stack: Stack, http: httpx.Client,
                                                  history: dict[str, Any],
                                                  records: list[dict[str, Any]]) -> None:
    values = np.array(history["values"], dtype=float)
    forecasts = _forecasts(stack, http, history, CALLERS)
    for caller, body in forecasts.items():
        assert body["variant"] == variant_for(caller, 50)  # the sticky split, per caller
        assert body["model_version"] == {"champion": "1", "challenger": "2"}[body["variant"]]
        assert body["model_name"] == FORECASTER
        season = 24 if body["model_version"] == "1" else 12  # a day ago, or the last 12 hours
        assert body["predictions"][0]["mean"] == pytest.approx(values[-season:][:12], rel=1e-6)
    assert {b["variant"] for b in forecasts.values()} == {"champion", "challenger"}
    classes = _classes(stack, http, records, CALLERS)
    for caller, body in classes.items():
        assert body["variant"] == variant_for(caller, 50)
        assert body["model_version"] == {"champion": "1", "challenger": "2"}[body["variant"]]
        assert body["task"] == "classification"
    assert {b["variant"] for b in classes.values()} == {"champion", "challenger"}
    for caller, record in zip(CALLERS[:6], records, strict=False):  # the spec route, by endpoint
        spec = http.post(f"{stack.router}/predict/{CLS_ENDPOINT}",
                         json={"features": record, "user_id": caller}).json()
        assert spec["model_version"] == classes[caller]["model_version"]
        assert 0.0 <= spec["prediction_proba"] <= 1.0
    default = http.post(f"{stack.router}/predict", json={
        "data": [[t, v] for t, v in zip(history["timestamps"], history["values"], strict=True)],
        "forecast_horizon": 12, "user_id": CALLERS[0]})
    assert default.status_code == 200, default.text  # /predict: the first model, the forecaster
    assert default.json()["model_version"] == forecasts[CALLERS[0]]["model_version"]


def test_a_split_change_on_one_model_leaves_the_other_alone(
        stack: Stack, http: httpx.Client, history: dict[str, Any],
        records: list[dict[str, Any]]) -> None:
    classifier_split = _split_file(stack.home, CLASSIFIER).read_text()
    resp = http.post(f"{stack.control}/models/deploy", headers=stack.auth(), json={
        "model_name": FORECASTER, "version": "2", "canary_percent": 100})
    assert resp.status_code == 200, resp.text
    assert {e["version"]: e["weight"] for e in resp.json()["live"]} == {"1": 0, "2": 100}
    wait_for(lambda: {b["model_version"] for b in _forecasts(stack, http, history, CALLERS[:8])
                      .values()} == {"2"}, what="the forecaster's challenger at 100%")
    forecasts = _forecasts(stack, http, history, CALLERS)
    assert {(b["variant"], b["model_version"]) for b in forecasts.values()} == {
        ("challenger", "2")}
    assert _split_file(stack.home, CLASSIFIER).read_text() == classifier_split
    assert {e["version"]: e["weight"] for e in _status(stack, http, CLASSIFIER)["live"]} == {
        "1": 50, "2": 50}
    classes = _classes(stack, http, records, CALLERS)
    assert all(b["variant"] == variant_for(c, 50) for c, b in classes.items())

    rows = wait_for(lambda: (lambda r: r if all(
        b["request_id"] in r for b in [*forecasts.values(), *classes.values()]) else None)(
        _log_rows(stack.home)), what="the logged requests")
    for body in forecasts.values():
        row = rows[body["request_id"]]
        assert (row.model_name, row.model_version, row.variant) == (FORECASTER, "2",
                                                                    "challenger")
    for body in classes.values():
        row = rows[body["request_id"]]
        assert (row.model_name, row.model_version, row.variant) == (
            CLASSIFIER, body["model_version"], body["variant"])

    served = {(s.labels["model"], s.labels["version"], s.labels["variant"])
              for family in text_string_to_metric_families(http.get(f"{stack.router}/metrics").text)
              for s in family.samples if s.name == "tidemill_requests_total"}
    assert {(FC_ENDPOINT, "2", "challenger"), (CLS_ENDPOINT, "1", "champion"),
            (CLS_ENDPOINT, "2", "challenger")} <= served


def test_promote_on_one_model_leaves_the_others_aliases(stack: Stack, http: httpx.Client,
                                                        records: list[dict[str, Any]]) -> None:
    before = _status(stack, http, CLASSIFIER)
    classifier_split = _split_file(stack.home, CLASSIFIER).read_text()
    resp = http.post(f"{stack.control}/models/promote", headers=stack.auth(),
                     json={"model_name": FORECASTER})
    assert resp.status_code == 200, resp.text
    assert resp.json()["aliases"] == {"champion": "2", "challenger": None,
                                      "previous_champion": "1"}
    after = _status(stack, http, CLASSIFIER)
    assert after["aliases"] == before["aliases"] == {"champion": "1", "challenger": "2",
                                                     "previous_champion": None}
    assert after["live"] == before["live"]
    assert _split_file(stack.home, CLASSIFIER).read_text() == classifier_split
    rollback = http.post(f"{stack.control}/models/rollback", headers=stack.auth(),
                         json={"model_name": CLASSIFIER})
    assert rollback.status_code == 409  # the classifier was never promoted: nothing to undo
    assert _status(stack, http, FORECASTER)["aliases"]["champion"] == "2"
