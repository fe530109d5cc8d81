"""Model endpoints of the platform API on a real registry: the same SplitControl the control
API uses moves aliases and the local split together (each version loaded and test-predicted
first), and A/B tests land in the same prediction-log table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from monitoring.prometheus import free_port
from tests.platform_api.conftest import REPO, SERVING_PYTHON, TOKEN, ApiServer, start_api
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

        test = http.post("/ab-test", json={"model_name": REGISTERED, "challenger_version": "2",
                                           "split": 50, "duration_minutes": 5})  # fmt: skip
        assert test.status_code == 201, test.text
        read = http.get(f"/ab-test/{test.json()['id']}").json()
        assert read["challenger_percent"] == 50 and read["status"] == "running"

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
            test = sdk.start_ab_test(REGISTERED, 2, split=50, duration_minutes=5)
            by_test = sdk.predict(history, 12, ab_test=test["id"], user_id="bob")
            with pytest.raises(ApiError) as no_test:
                sdk.predict(history, 12, ab_test="0123456789ab")
            with pytest.raises(ApiError) as other_model:
                sdk.predict(history, 12, ab_test=test["id"], model_name="another-model")
            csv = api.home / "history.csv"
            pd.DataFrame(history, columns=["date", "OT"]).to_csv(csv, index=False)
            env = {**os.environ, "TIDEMILL_API_URL": api.url, "TIDEMILL_CONTROL_TOKEN": TOKEN}
            cli = subprocess.run(
                [str(TIDEMILL), "api", "predict", "--ab-test", test["id"], "--history", str(csv),
                 "--horizon", "12", "--user-id", "bob"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            status = subprocess.run([str(TIDEMILL), "api", "ab-test-status", test["id"]], env=env,
                                    capture_output=True, text=True, timeout=120)  # fmt: skip
        finally:
            os.killpg(stack.pid, signal.SIGTERM)
            stack.wait(60)
    assert len(first["predictions"]) == len(first["timestamps"]) == 12, first
    assert first["model_name"] == REGISTERED and first["variant"] in ("champion", "challenger")
    assert (first["variant"], first["model_version"]) == (again["variant"], again["model_version"])
    assert pinned == ["1", "2"]
    assert 400 <= wrong_kind.status_code < 500, wrong_kind.text
    assert bad.status_code == 400 and bad.json()["field"] == "data.timestamps"
    # by A/B test id: the test's model, the same sticky variant from the SDK and the CLI
    assert by_test["model_name"] == REGISTERED and len(by_test["predictions"]) == 12
    assert no_test.value.status == 404 and "0123456789ab" in no_test.value.detail
    assert other_model.value.status == 422 and "another-model" in other_model.value.detail
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert (shown["model_version"], shown["predictions"]) == (
        by_test["model_version"], by_test["predictions"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["id"] == test["id"]


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
