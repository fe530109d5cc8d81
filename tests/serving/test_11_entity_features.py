"""Tabular requests by entity key: a real Feast feature server (``tidemill features serve``
from the orchestrator environment, on loopback) over a materialised SQLite online store of AI4I
records, and the real serving stack of the AI4I classifier reading it at request time. The
entity's features give the same predictions as sending them; an unknown entity is a 404
naming it; the feature server down is a 503 naming it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.servers import stop
from tests.serving.conftest import (
    REPO,
    TABULAR_ENDPOINT,
    TABULAR_FEATURES,
    TIDEMILL,
    Stack,
    free_port,
    start_stack,
    wait_for,
)

ROWS = slice(2000, 2300)  # AI4I records outside the classifier's training rows


@pytest.fixture(scope="module")
def ai4i() -> pd.DataFrame:
    return pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig").iloc[ROWS]


@pytest.fixture(scope="module")
def feature_server(ai4i: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The AI4I records published to Feast, materialised, and Feast's feature server on them."""
    root = tmp_path_factory.mktemp("feast")
    source = root / "ai4i-slice.csv"
    ai4i.to_csv(source, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    home = root / "home"
    sync = subprocess.run([str(TIDEMILL), "features", "sync", "--home", str(home), "--ai4i",
                           str(source)], env=env, capture_output=True, text=True, timeout=300)
    assert sync.returncode == 0, sync.stdout[-2000:] + sync.stderr[-3000:]
    assert "materialised ['ai4i_machine']" in sync.stdout
    port = free_port()
    with open(root / "feature-server.log", "wb") as log:
        proc = subprocess.Popen([str(TIDEMILL), "features", "serve", "--home", str(home),
                                 "--port", str(port)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (root / "feature-server.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=120, what="the feature server")
        first = httpx.post(f"{url}/get-online-features", timeout=60, json={
            "entities": {"UDI": [2001]}, "features": ["ai4i_machine:Torque"]})  # loads the views
        assert first.status_code == 200, first.text
        yield url, proc
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def entity_stack(tabular_home: Path, feature_server: tuple[str, Any],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("logs") / "entity-stack.log"
    running = start_stack(tabular_home, 50, log, ("--endpoint", TABULAR_ENDPOINT),
                          {"TIDEMILL_FEAST_FEATURE_SERVER_URL": feature_server[0]})
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def ec(entity_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


def test_entity_key_gives_the_predictions_of_its_features(entity_stack, ec, ai4i):
    """Per entity on /predict and for a batch on V1, for both versions: the answers equal
    those for the entity's features sent explicitly (which still work unchanged)."""
    picked = pd.concat([ai4i[ai4i["Machine failure"] == 1].head(5),
                        ai4i[ai4i["Machine failure"] == 0].head(15)])
    udis = [int(u) for u in picked["UDI"]]
    records = picked[TABULAR_FEATURES].to_dict("records")
    for version in ("1", "2"):
        for udi, record in zip(udis, records, strict=True):
            by_key = ec.post(f"{entity_stack.router}/predict",
                             json={"entity": {"UDI": udi}, "model_version": version})
            sent = ec.post(f"{entity_stack.router}/predict",
                           json={"features": record, "model_version": version})
            assert by_key.status_code == 200 and sent.status_code == 200, by_key.text + sent.text
            assert by_key.json()["model_version"] == version
            assert by_key.json()["prediction"] == sent.json()["prediction"]
            assert by_key.json()["prediction_proba"] == pytest.approx(
                sent.json()["prediction_proba"], abs=1e-12)
        url = f"{entity_stack.router}/v1/models/{TABULAR_ENDPOINT}:predict"
        by_key = ec.post(url, json={"entities": [{"UDI": u} for u in udis],
                                    "model_version": version})
        sent = ec.post(url, json={"instances": records, "model_version": version})
        assert by_key.status_code == 200, by_key.text
        got, want = by_key.json()["predictions"], sent.json()["predictions"]
        assert [p["prediction"] for p in got] == [p["prediction"] for p in want]
        assert {p["prediction"] for p in got} == {0, 1}  # failures found among the entities
        assert [p["prediction_proba"] for p in got] == pytest.approx(
            [p["prediction_proba"] for p in want], abs=1e-12)


def test_unknown_or_malformed_entities_are_refused_by_name(entity_stack, ec):
    url = f"{entity_stack.router}/predict"
    r = ec.post(url, json={"entity": {"UDI": 987654}})
    assert r.status_code == 404, r.text
    assert r.json()["field"] == "entity.UDI" and "987654" in r.json()["error"], r.text
    r = ec.post(f"{entity_stack.router}/v1/models/{TABULAR_ENDPOINT}:predict",
                json={"entities": [{"UDI": 2001}, {"UDI": 42}]})  # 42: not in the online store
    assert r.status_code == 404 and "[42]" in r.json()["error"], r.text
    for body, field, words in (
        ({"entity": {"Machine": 1}}, "entity", "'UDI'"),
        ({"entity": {"UDI": "2001"}}, "entity.UDI", "must be int"),
        ({"entity": {"UDI": 2001}, "features": {"Torque": 1.0}}, "entity", "not both"),
    ):
        r = ec.post(url, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field and words in r.json()["error"], r.text


def test_feature_server_down_is_a_503_naming_it(entity_stack, ec, feature_server, ai4i):
    url, proc = feature_server
    stop(proc)
    r = ec.post(f"{entity_stack.router}/predict", json={"entity": {"UDI": 2001}})
    assert r.status_code == 503, r.text
    assert url in r.json()["error"] and r.json()["field"] == "entity", r.text
    record = ai4i[TABULAR_FEATURES].iloc[0].to_dict()
    assert ec.post(f"{entity_stack.router}/predict", json={"features": record}).status_code == 200
