"""``tidemill.client`` and ``tidemill api`` against the real API server (the training part of
the flow runs on the real platform in tests/e2e/test_platform.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.platform_api.conftest import AI4I, TOKEN, ApiServer, ai4i_slice
from tidemill.client import ApiError, TidemillClient

TIDEMILL = Path(sys.executable).parent / "tidemill"


def test_client_dataset_flow(api: ApiServer) -> None:
    with TidemillClient(api.url, token=TOKEN) as client:
        raw = client.upload_dataset(ai4i_slice(200), "sdk", target_column="Machine failure")
        assert raw.rows == 200 and raw.missing["Torque"] == 3
        clean = client.clean(raw.id, drop_columns=["UDI"])
        assert clean.parent_id == raw.id and clean.summary["missing_after"] == 0
        chosen = client.select_features(clean.id, task="classification", method="mutual_info",
                                        n_features=2)  # fmt: skip
        assert len(chosen.summary["selected"]) == 2
        parts = client.split(chosen.id, task="classification", test_size=0.25)
        assert sum(parts.summary["parts"].values()) == clean.rows
        assert [d.version for d in client.datasets("sdk")] == [4, 3, 2, 1]
        ranked = client.compare(clean.id, task="classification", cv_folds=3,
                                algorithms=["logistic_regression", "decision_tree"],
                                hyperparameters={"decision_tree": {"max_depth": 3}})
        assert ranked["metric"] == "pr_auc" and ranked["rows"] == clean.rows
        assert {r["algorithm"] for r in ranked["results"]} == {"logistic_regression",
                                                               "decision_tree"}
        assert all(len(r["folds"]) == 3 and 0 <= r["mean"] <= 1 for r in ranked["results"])
        assert ranked["results"][0]["mean"] >= ranked["results"][1]["mean"]
        with pytest.raises(ApiError) as unknown:
            client.compare(clean.id, task="classification", algorithms=["magic"])
        assert unknown.value.status == 422 and "'magic'" in unknown.value.detail
        with pytest.raises(ApiError) as untuned:
            client.tune(clean.id, task="classification", algorithms=["decision_tree"],
                        search_spaces={})
        assert untuned.value.status == 422 and "['decision_tree']" in untuned.value.detail
        space = {"decision_tree": {"max_depth": {"type": "int", "low": 2, "high": 6}}}
        with pytest.raises(ApiError) as no_airflow:
            client.tune(clean.id, task="classification", algorithms=["decision_tree"],
                        search_spaces=space, n_trials=2)
        assert no_airflow.value.status == 503 and "unreachable" in no_airflow.value.detail
        assert not list((api.home / "platform").rglob("*.yaml"))  # the job left nothing
        with pytest.raises(ApiError) as bad:
            client.split(raw.id, task="regression", time_column="when")
        assert bad.value.status == 422 and "'when'" in str(bad.value.detail)
        with pytest.raises(ApiError) as missing:
            client.job("no-such-job")
        assert missing.value.status == 404 and "'no-such-job'" in missing.value.detail
        with pytest.raises(ApiError) as no_test:
            client.ab_test("price-test-q4")
        assert no_test.value.status == 404 and "'price-test-q4'" in no_test.value.detail
        with pytest.raises(ApiError) as bad_name:
            client.start_ab_test("m", 2, split=10, duration_minutes=5, name="price test")
        assert bad_name.value.status == 422 and bad_name.value.detail[0]["loc"] == [
            "body", "name"]  # fmt: skip
    with TidemillClient(api.url) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.upload_dataset(AI4I, "nope")
    assert refused.value.status == 401


def test_cli_verbs(api: ApiServer) -> None:
    env = {**os.environ, "TIDEMILL_API_URL": api.url, "TIDEMILL_CONTROL_TOKEN": TOKEN}

    def tidemill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TIDEMILL), "api", *args], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip

    made = tidemill("upload", str(AI4I), "--name", "cli", "--target", "Machine failure")
    assert made.returncode == 0, made.stderr
    uploaded = json.loads(made.stdout)
    assert uploaded["rows"] == 10_000
    shown = json.loads(tidemill("dataset", uploaded["id"]).stdout)
    assert shown["stats"]["Torque"]["max"] == pytest.approx(76.6)
    wrong = tidemill("upload", str(AI4I), "--name", "cli", "--target", "nope")
    assert wrong.returncode == 1 and "'nope'" in wrong.stderr
    assert httpx.get(f"{api.url}/api/ml/datasets", params={"name": "cli"}).json()["datasets"]
    id_like = tidemill("ab-test", "m", "2", "--split", "10", "--minutes", "5", "--name",
                       "0123456789ab")  # fmt: skip
    assert id_like.returncode == 1 and "looks like an A/B test id" in id_like.stderr
