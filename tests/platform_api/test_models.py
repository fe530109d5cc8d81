"""Model endpoints of the platform API on a real registry: the same SplitControl the control
API uses moves aliases and the local split together (each version loaded and test-predicted
first), and A/B tests land in the same prediction-log table."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, insert, text
from sqlalchemy.exc import IntegrityError

from monitoring.prometheus import free_port
from serving import ab_tests
from serving.prediction_log.schema import ab_tests as ab_tests_table
from serving.prediction_log.schema import engine_for
from tests.platform_api.conftest import (
    REPO,
    SERVING_PYTHON,
    TOKEN,
    ApiServer,
    answers_ok,
    start_api,
)
from tests.servers import postgres
from tests.serving.conftest import CONFIG, REGISTERED, TIDEMILL
from tidemill.client import ApiError, TidemillClient

ETTH1 = REPO / "data" / "ETTh1.csv"


@pytest.fixture(scope="module")
def registry_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """Versions 1 (nlinear, champion) and 2 (seasonal_naive, challenger) in a fresh home."""
    root = tmp_path_factory.mktemp("platform-models")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    for algorithm in ("nlinear", "seasonal_naive"):
        subprocess.run(
            [str(TIDEMILL), "train", "--config", str(config), "--home", str(root / "home"),
             "--trials", "1", "--algorithms", algorithm],
            cwd=root, env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    server = start_api(root / "home", root / "api.log")
    try:
        yield server
    finally:
        server.stop()


def aliases(home: Path) -> dict[str, str]:
    """Champion and challenger aliases in the registry (version numbers as strings)."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    held = MlflowClient(uri, registry_uri=uri).get_registered_model(REGISTERED).aliases
    return {alias: str(v) for alias, v in held.items() if alias in ("champion", "challenger")}


def test_deploy_ab_test_promote_rollback(registry_api: ApiServer) -> None:
    api = registry_api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"{api.url}/api/ml/models", timeout=120, headers=auth) as http:
        listed = http.get("/deployed", params={"name": REGISTERED}).raise_for_status().json()
        assert {(m["version"], tuple(m["aliases"])) for m in listed["models"]} == {
            ("1", ("champion",)), ("2", ("challenger",))}  # fmt: skip

        deployed = http.post("/deploy", json={"model_name": REGISTERED, "version": "2",
                                               "canary_percent": 30})  # fmt: skip
        assert deployed.status_code == 200, deployed.text
        split = json.loads((api.home / "serving" / "splits" / f"{REGISTERED}.json").read_text())
        assert split["challenger_percent"] == 30
        live = http.get("/deployed", params={"status": "live"}).json()["models"]
        assert {m["version"]: m["weight"] for m in live} == {"1": 70, "2": 30}

        body = {"model_name": REGISTERED, "challenger_version": "2", "split": 50,
                "duration_minutes": 5, "name": "price-test-q4"}  # fmt: skip
        test = http.post("/ab-test", json=body)
        assert test.status_code == 201, test.text
        assert test.json()["name"] == "price-test-q4"
        read = http.get(f"/ab-test/{test.json()['id']}").json()
        assert read["challenger_percent"] == 50 and read["status"] == "running"
        by_name = http.get("/ab-test/price-test-q4").json()
        assert (by_name["id"], by_name["name"]) == (test.json()["id"], "price-test-q4")
        # a taken name is a 409 naming the test that holds it, and the split stays as it was
        taken = http.post("/ab-test", json={**body, "split": 20})
        assert taken.status_code == 409 and test.json()["id"] in taken.json()["detail"]
        assert "'price-test-q4'" in taken.json()["detail"]
        assert json.loads((api.home / "serving" / "splits" / f"{REGISTERED}.json").read_text())[
            "challenger_percent"] == 50  # fmt: skip
        bad = http.post("/ab-test", json={**body, "name": "price test"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "name"]
        assert "pattern" in bad.json()["detail"][0]["msg"]
        id_like = http.post("/ab-test", json={**body, "name": "0123456789ab"})
        assert id_like.status_code == 422 and "looks like an A/B test id" in id_like.text
        assert http.get("/ab-test/no such test").status_code == 422

        assert http.post(f"/{REGISTERED}/promote").status_code == 200
        assert aliases(api.home) == {"champion": "2"}
        back = http.post(f"/{REGISTERED}/rollback", params={"to_version": "1"})
        assert back.status_code == 200, back.text
        assert aliases(api.home)["champion"] == "1"

        before = aliases(api.home)
        missing = http.post("/deploy", json={"model_name": REGISTERED, "version": "99",
                                             "canary_percent": 10})  # fmt: skip
        assert missing.status_code == 404 and "99" in missing.json()["detail"]
        unknown = http.post("/nobody/promote")
        assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
        assert http.get("/ab-test/nope").status_code == 404
        assert aliases(api.home) == before
    with TidemillClient(api.url, token=TOKEN) as sdk:
        assert [m["version"] for m in sdk.deployed(REGISTERED, "champion")] == ["1"]
        sdk.deploy(REGISTERED, 2, 20)
        sdk.promote(REGISTERED)
        assert aliases(api.home) == {"champion": "2"}
        sdk.rollback(REGISTERED)
        assert aliases(api.home) == {"champion": "1"}
        started = sdk.start_ab_test(REGISTERED, 2, split=40, duration_minutes=1)
        assert sdk.ab_test(started["id"])["challenger_percent"] == 40
        assert started["name"] is None
        named = sdk.start_ab_test(REGISTERED, 2, split=30, duration_minutes=1, name="sdk-q4")
        assert sdk.ab_test("sdk-q4")["id"] == named["id"]
        with pytest.raises(ApiError) as taken:
            sdk.start_ab_test(REGISTERED, 2, split=10, duration_minutes=1, name="sdk-q4")
        assert taken.value.status == 409 and named["id"] in taken.value.detail
    env = {**os.environ, "TIDEMILL_API_URL": api.url, "TIDEMILL_CONTROL_TOKEN": TOKEN}
    shown = subprocess.run([str(TIDEMILL), "api", "deployed", "--name", REGISTERED], env=env,
                           capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    assert sorted(m["version"] for m in json.loads(shown.stdout)) == ["1", "2"]
    refused = httpx.post(f"{api.url}/api/ml/models/{REGISTERED}/promote", timeout=30)
    assert refused.status_code == 401


def test_predict_goes_through_the_serving_router(registry_api: ApiServer) -> None:
    api = registry_api
    history = pd.read_csv(ETTH1, nrows=300)[["date", "OT"]].values.tolist()
    with TidemillClient(api.url, token=TOKEN) as sdk:
        with pytest.raises(ApiError) as no_stack:
            sdk.predict(history, 12)
        assert no_stack.value.status == 409 and "tidemill serve" in no_stack.value.detail
        sdk.deploy(REGISTERED, 2, 50)
        stack = start_stack(api.home)
        try:
            first = sdk.predict(history, 12, user_id="alice")
            again = sdk.predict(history, 12, user_id="alice")
            pinned = [sdk.predict(history, 12, model_version=v)["model_version"] for v in "12"]
            wrong_kind = httpx.post(f"{api.url}/api/ml/models/predict", timeout=60, json={
                "features": {"Torque": 40.0}})
            bad = httpx.post(f"{api.url}/api/ml/models/predict", timeout=60, json={
                "data": [["not a time", 1.0]] * 60, "forecast_horizon": 12})
            env = {**os.environ, "TIDEMILL_API_URL": api.url, "TIDEMILL_CONTROL_TOKEN": TOKEN}
            started = subprocess.run(
                [str(TIDEMILL), "api", "ab-test", REGISTERED, "2", "--split", "50", "--minutes",
                 "5", "--name", "forecast-q4"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            test = json.loads(started.stdout)
            by_test = sdk.predict(history, 12, ab_test=test["id"], user_id="bob")
            by_name = sdk.predict(history, 12, ab_test="forecast-q4", user_id="bob")
            with pytest.raises(ApiError) as no_test:
                sdk.predict(history, 12, ab_test="0123456789ab")
            with pytest.raises(ApiError) as other_model:
                sdk.predict(history, 12, ab_test=test["id"], model_name="another-model")
            csv = api.home / "history.csv"
            pd.DataFrame(history, columns=["date", "OT"]).to_csv(csv, index=False)
            cli = subprocess.run(
                [str(TIDEMILL), "api", "predict", "--ab-test", "forecast-q4", "--history",
                 str(csv), "--horizon", "12", "--user-id", "bob"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            status = subprocess.run([str(TIDEMILL), "api", "ab-test-status", "forecast-q4"],
                                    env=env, capture_output=True, text=True,
                                    timeout=120)  # fmt: skip
        finally:
            os.killpg(stack.pid, signal.SIGTERM)
            stack.wait(60)
    assert len(first["predictions"]) == len(first["timestamps"]) == 12, first
    assert first["model_name"] == REGISTERED and first["variant"] in ("champion", "challenger")
    assert (first["variant"], first["model_version"]) == (again["variant"], again["model_version"])
    assert pinned == ["1", "2"]
    assert 400 <= wrong_kind.status_code < 500, wrong_kind.text
    assert bad.status_code == 400 and bad.json()["field"] == "data.timestamps"
    # by A/B test id or name: the test's model, the same sticky variant from the SDK and CLI
    assert by_test["model_name"] == REGISTERED and len(by_test["predictions"]) == 12
    assert test["name"] == "forecast-q4"
    assert (by_name["model_version"], by_name["predictions"]) == (
        by_test["model_version"], by_test["predictions"])
    assert no_test.value.status == 404 and "0123456789ab" in no_test.value.detail
    assert other_model.value.status == 422 and "another-model" in other_model.value.detail
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert (shown["model_version"], shown["predictions"]) == (
        by_test["model_version"], by_test["predictions"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["id"] == test["id"]


SECOND = "second-forecaster"


def test_predict_by_model_name_reaches_that_models_own_server(registry_api: ApiServer) -> None:
    """On Kubernetes every registered model has its own InferenceService and the chart maps
    each to its URL (TIDEMILL_PREDICT_URLS): a predict by model name (or by an A/B test's name)
    goes to that model's server. Two real routers on the home, each serving one registered
    model alone under its own endpoint, stand in for two InferenceServices; each router's
    Prometheus counters show which one answered (a router also serves a model deployed after
    it started, so the answer's model name alone would not tell)."""
    api = registry_api
    uri = f"sqlite:///{api.home / 'mlflow.db'}"
    registry = MlflowClient(uri, registry_uri=uri)
    for version in ("1", "2"):
        registry.copy_model_version(f"models:/{REGISTERED}/{version}", SECOND)
    history = pd.read_csv(ETTH1, nrows=300)[["date", "OT"]].values.tolist()
    (api.home / "serving" / "stack.json").unlink(missing_ok=True)  # no local stack
    with TidemillClient(api.url, token=TOKEN) as sdk:
        sdk.deploy(REGISTERED, 2, 50)
        sdk.deploy(SECOND, 1, 0)  # its first deployment: version 1 serves alone
    routers: list[subprocess.Popen[bytes]] = []
    mapped = None
    try:
        first_url = start_router(api.home, REGISTERED, "ep-first", routers)
        second_url = start_router(api.home, SECOND, "ep-second", routers)
        mapped = start_api(api.home, api.home / "mapped-api.log", TIDEMILL_ROUTER_URL=first_url,
                           TIDEMILL_PREDICT_URLS=json.dumps({REGISTERED: first_url,
                                                             SECOND: second_url}))
        with TidemillClient(mapped.url, token=TOKEN) as sdk:
            by_first = sdk.predict(history, 12, model_name=REGISTERED, user_id="carol")
            by_second = sdk.predict(history, 12, model_name=SECOND, user_id="carol")
            default = sdk.predict(history, 12, user_id="carol")  # TIDEMILL_ROUTER_URL's model
            sdk.start_ab_test(SECOND, 2, split=50, duration_minutes=5, name="second-q4")
            by_test = sdk.predict(history, 12, ab_test="second-q4", user_id="carol")
            with pytest.raises(ApiError) as unknown:
                sdk.predict(history, 12, model_name="nobody")
        counts = {url: served_counts(url) for url in (first_url, second_url)}
    finally:
        if mapped is not None:
            mapped.stop()
        for proc in routers:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    assert (by_first["model_name"], by_second["model_name"], default["model_name"],
            by_test["model_name"]) == (REGISTERED, SECOND, REGISTERED, SECOND)
    assert by_second["model_version"] == "1" and len(by_test["predictions"]) == 12
    assert counts[first_url] == {"ep-first": 2}  # by name and the default: the first router
    assert counts[second_url] == {"ep-second": 2}  # by name and by A/B test name: the second
    assert unknown.value.status == 404 and "'nobody'" in unknown.value.detail
    assert f"{sorted([REGISTERED, SECOND])}" in unknown.value.detail  # the models it knows


def test_a_wrong_predict_url_map_stops_the_api_at_start(tmp_path: Path) -> None:
    """TIDEMILL_PREDICT_URLS must be a JSON object of http(s) URLs; else the platform API does
    not start, and its log names the variable and what it got."""
    with pytest.raises(RuntimeError) as refused:
        start_api(tmp_path / "home", tmp_path / "api.log",
                  TIDEMILL_PREDICT_URLS='{"m": "m.ns.svc.cluster.local"}')  # fmt: skip
    assert "TIDEMILL_PREDICT_URLS must be a JSON object" in str(refused.value)
    assert "m.ns.svc.cluster.local" in str(refused.value)


def start_router(home: Path, model: str, endpoint: str,
                 started: list[subprocess.Popen[bytes]]) -> str:  # fmt: skip
    """``python -m serving.router`` serving ``model`` alone under ``endpoint`` (its process
    added to ``started``); its URL once ready."""
    url = f"http://127.0.0.1:{free_port()}"
    # no PROMETHEUS_*: importing feast (an earlier test in this process) points
    # PROMETHEUS_MULTIPROC_DIR at a folder of its own, and two routers sharing it would each
    # report the other's counters
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "TIDEMILL_", "PROMETHEUS_"))}
    proc = subprocess.Popen(
        [str(SERVING_PYTHON), "-m", "serving.router", "--home", str(home), "--port",
         url.rsplit(":", 1)[1], "--workers", "1", "--model", f"{model}={endpoint}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    started.append(proc)
    assert answers_ok(f"{url}/v2/models/{endpoint}/ready", proc, 180), f"{endpoint}: no router"
    return url


def served_counts(router: str) -> dict[str, int]:
    """Requests a router answered, per endpoint (its ``tidemill_requests`` counters)."""
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(httpx.get(f"{router}/metrics").text):
        for sample in family.samples:
            if sample.name == "tidemill_requests_total":
                model = sample.labels["model"]
                counts[model] = counts.get(model, 0) + int(sample.value)
    return counts


OLD_AB_TESTS = """CREATE TABLE ab_tests (
    id VARCHAR(32) PRIMARY KEY, model_name VARCHAR(256) NOT NULL,
    champion_version VARCHAR(32) NOT NULL, challenger_version VARCHAR(32) NOT NULL,
    challenger_percent INTEGER NOT NULL, metric VARCHAR(16) NOT NULL,
    started_at TIMESTAMP NOT NULL, ends_at TIMESTAMP NOT NULL)"""


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_ab_test_names_on_a_log_made_before_them(database: str, tmp_path: Path) -> None:
    """A prediction log whose ab_tests table predates names gets the column and its unique
    index when opened; its tests stay readable by id (without a name)."""
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'predictions.db'}"
        else:
            url = stack.enter_context(postgres()).create_database("predictions")
        old = create_engine(url)
        with old.begin() as conn:
            conn.execute(text(OLD_AB_TESTS))
            conn.execute(text("INSERT INTO ab_tests VALUES ('00000000abcd', 'm', '1', '2', 20, "
                              "'mae', '2026-01-01 00:00:00', '2026-01-02 00:00:00')"))
        old.dispose()
        engine = engine_for(url)
        engine_for(url).dispose()  # opening an upgraded log again changes nothing
        kept = ab_tests.read(engine, "00000000abcd")
        assert kept is not None and kept["name"] is None and kept["status"] == "finished"
        row = {"model_name": "m", "champion_version": "1", "challenger_version": "2",
               "challenger_percent": 20, "metric": "mae", "started_at": datetime(2026, 2, 1),
               "ends_at": datetime(2026, 2, 2), "name": "q4"}  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(ab_tests_table), [{**row, "id": "000000000001"},
                                                 {**row, "id": "000000000002", "name": None}])
        assert ab_tests.read(engine, "q4")["id"] == "000000000001"
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(ab_tests_table), [{**row, "id": "000000000003"}])
        engine.dispose()


def start_stack(home: Path) -> subprocess.Popen[bytes]:
    """``python -m serving.stack`` (serving environment) on free ports; ready once stack.json
    is written."""
    (home / "serving" / "stack.json").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    proc = subprocess.Popen(
        [str(SERVING_PYTHON), "-m", "serving.stack", "--home", str(home), "--port",
         str(free_port()), "--control-port", str(free_port()), "--workers", "1"],
        env={**env, "TIDEMILL_CONTROL_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (home / "serving" / "stack.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "serving stack did not start"
        time.sleep(0.5)
    return proc
