"""``tidemill up``/``down`` end to end: every service answers on 127.0.0.1, Prometheus scrapes
the serving stack, Chromium sees the three DAGs and the champion alias, ``down`` leaves
nothing behind. The tests run in file order on one platform; the last one stops it."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
import pytest

from monitoring.prometheus import PrometheusServer, render_config
from serving.demo_client import run_demo
from tests.e2e.chromium import Chromium
from tests.e2e.conftest import ARTIFACTS, REGISTERED, REPO, Platform
from tests.platform_api.conftest import ai4i_slice
from tidemill.airflow_sqlite import AIRFLOW_API_TIMEOUT_S
from tidemill.client import JobFailed, TidemillClient
from tidemill.platform import AIRFLOW_USER, airflow_password, down, status, up

# The DAGs the platform ships; extend when a DAG is added to dags/.
EXPECTED_DAGS = ("forecast_training", "drift_monitor", "promote_challenger", "tabular_training",
                 "tabular_drift_monitor", "tabular_promotion")
AIRFLOW_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


def state(live: Platform) -> dict[str, Any]:
    return json.loads((live.home.root / "platform.json").read_text())


def group_members(pgids: set[int]) -> dict[int, int]:
    """pid -> process group of every live (non-zombie) process in one of ``pgids``."""
    members = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) in pgids:
            members[int(entry.name)] = int(fields[2])
    return members


def listening_addresses(pids: set[int]) -> set[str]:
    """Hex local addresses (/proc/net/tcp*) of the TCP sockets these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1])
    return addresses


def airflow_token(live: Platform) -> str:
    resp = httpx.post(
        f"{live.urls['airflow']}/auth/token",
        timeout=AIRFLOW_API_TIMEOUT_S,
        json={"username": AIRFLOW_USER, "password": airflow_password(live.home)},
    )
    return resp.raise_for_status().json()["access_token"]


def airflow_dags(live: Platform, timeout: float = 180.0) -> dict[str, dict[str, Any]]:
    """The DAGs the API lists, once every expected one was parsed."""
    headers = {"Authorization": f"Bearer {airflow_token(live)}"}
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(
            f"{live.urls['airflow']}/api/v2/dags", headers=headers, timeout=AIRFLOW_API_TIMEOUT_S
        )
        dags = {d["dag_id"]: d for d in resp.raise_for_status().json()["dags"]}
        if set(EXPECTED_DAGS) <= dags.keys() or time.monotonic() > deadline:
            return dags
        time.sleep(2)


def ok(resp: httpx.Response, live: Platform) -> Any:
    """The JSON of a 2xx answer; otherwise fail with its body and the API server's log tail."""
    if resp.is_success:
        return resp.json()
    [record] = [r for r in state(live)["processes"] if r["name"] == "airflow-api-server"]
    tail = Path(record["log"]).read_text(errors="replace").splitlines()[-80:]
    pytest.fail(
        f"{resp.request.method} {resp.url} -> {resp.status_code} {resp.text}\n" + "\n".join(tail)
    )


def wait_for_asset_run(live: Platform, dag_id: str, timeout: float) -> dict[str, Any]:
    """The first asset-triggered run of ``dag_id``, once it finished successfully."""
    headers = {"Authorization": f"Bearer {airflow_token(live)}"}
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{live.urls['airflow']}/api/v2/dags/{dag_id}/dagRuns",
                         headers=headers, timeout=AIRFLOW_API_TIMEOUT_S)
        runs = [r for r in ok(resp, live)["dag_runs"] if r["run_type"] == "asset_triggered"]
        if runs and runs[0]["state"] in ("success", "failed"):
            assert runs[0]["state"] == "success", runs[0]
            return runs[0]
        assert time.monotonic() < deadline, f"{dag_id}: no finished asset-triggered run: {runs}"
        time.sleep(2)


def task_xcom(live: Platform, dag_id: str, run_id: str, task_id: str) -> Any:
    """The return value a task of a run pushed."""
    resp = httpx.get(
        f"{live.urls['airflow']}/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/"
        f"taskInstances/{task_id}/xcomEntries/return_value",
        headers={"Authorization": f"Bearer {airflow_token(live)}"}, timeout=AIRFLOW_API_TIMEOUT_S,
    )
    value = ok(resp, live)["value"]
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # a task that returned a plain string


def prometheus_query(live: Platform, expr: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{live.urls['prometheus']}/api/v1/query", params={"query": expr}, timeout=10)
    return resp.raise_for_status().json()["data"]["result"]


def test_up_starts_every_service_on_loopback(live_platform: Platform) -> None:
    live = live_platform
    urls = live.urls
    with httpx.Client(timeout=30) as client:
        # heartbeats: on a loaded machine one can run late for a moment; all must be healthy
        # within a minute
        deadline = time.monotonic() + 60
        while True:
            health = client.get(f"{urls['airflow']}/api/v2/monitor/health").raise_for_status()
            states = {p: health.json()[p]["status"] for p in AIRFLOW_COMPONENTS}
            if set(states.values()) == {"healthy"} or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert set(states.values()) == {"healthy"}, states
        assert client.get(f"{urls['mlflow']}/health").status_code == 200
        assert client.get(f"{urls['router']}/v2/health/ready").status_code == 200
        assert client.get(f"{urls['control_api']}/readyz").status_code == 200
        assert client.get(f"{urls['prometheus']}/-/ready").status_code == 200
        assert client.get(f"{urls['feature_server']}/health").status_code == 200
    assert urls["model_page"] == f"{urls['mlflow']}/#/models/{REGISTERED}"

    recorded = state(live)
    names = {r["name"] for r in recorded["processes"]}
    assert {
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "mlflow",
        "serving",
        "serving-router",
        "serving-control-api",
        "prometheus",
        "platform-api",
        "feature-server",
    } == names
    assert status(live.home, out=lambda _line: None) == dict.fromkeys(names, True)
    lines: list[str] = []
    assert up(live.home, live.ports, out=lines.append) == urls  # idempotent: starts nothing
    assert state(live)["processes"] == recorded["processes"]
    assert any(f"login {AIRFLOW_USER} / {airflow_password(live.home)}" in ln for ln in lines)

    members = group_members({r["pgid"] for r in recorded["processes"]})
    listening = listening_addresses(set(members))
    assert len(listening) >= 5
    assert {a.split(":")[0] for a in listening} <= LOOPBACK_HEX, listening


def test_up_materialises_every_feature_view(live_platform: Platform) -> None:
    """``up`` publishes and materialises ETTh1's covariates and AI4I's records (a line per
    view); the feature server it started answers the newest value of each."""
    lines = live_platform.up_lines
    for view in ("etth1_covariates", "ai4i_machine"):
        assert any(ln.startswith(f"[up] features: published {view} (") for ln in lines), lines
        assert any(ln.startswith(f"[up] features: materialised {view} (") for ln in lines), lines
    etth1 = pd.read_csv(REPO / "data" / "ETTh1.csv").iloc[-1]
    ai4i = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig").iloc[-1]
    url = f"{live_platform.urls['feature_server']}/get-online-features"
    asks = [({"series_id": ["ETTh1"]}, "etth1_covariates", {"HUFL": etth1["HUFL"],
                                                             "LULL": etth1["LULL"]}),
            ({"UDI": [int(ai4i["UDI"])]}, "ai4i_machine", {"Torque": ai4i["Torque"]})]
    for entities, view, expected in asks:
        resp = httpx.post(url, timeout=30, json={
            "entities": entities, "features": [f"{view}:{f}" for f in expected]})
        answer = resp.raise_for_status().json()
        got = dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))
        assert {f: got[f]["values"] for f in expected} == {
            f: [pytest.approx(v)] for f, v in expected.items()}, answer


def test_dags_are_parsed_and_unpaused(live_platform: Platform) -> None:
    dags = airflow_dags(live_platform)
    assert set(EXPECTED_DAGS) <= dags.keys()
    assert not [d for d in EXPECTED_DAGS if dags[d]["is_paused"]]


def test_a_triggered_training_runs_and_its_asset_triggers_promotion(
    live_platform: Platform,
) -> None:
    """A user's trigger really runs (scheduler, LocalExecutor, execution API) and the model
    Asset it emits schedules ``promote_challenger``, which judges the model that training
    registered (the event's config: the training run's effective config)."""
    live = live_platform
    conf = {
        "config": str(live.home.root / "e2e.yaml"),
        "algorithms": ["seasonal_naive"],
        "n_trials": 1,
        "reason": "e2e",
    }
    with httpx.Client(
        base_url=f"{live.urls['airflow']}/api/v2",
        timeout=AIRFLOW_API_TIMEOUT_S,
        headers={"Authorization": f"Bearer {airflow_token(live)}"},
    ) as api:
        run = ok(
            api.post("/dags/forecast_training/dagRuns", json={"logical_date": None, "conf": conf}),
            live,
        )
        deadline = time.monotonic() + 240
        while run["state"] not in ("success", "failed"):
            assert time.monotonic() < deadline, f"forecast_training still {run['state']}"
            time.sleep(2)
            run = ok(api.get(f"/dags/forecast_training/dagRuns/{run['dag_run_id']}"), live)
        assert run["state"] == "success", run
        while True:
            runs = ok(api.get("/dags/promote_challenger/dagRuns"), live)
            if runs["dag_runs"]:
                break
            assert time.monotonic() < deadline, "promote_challenger was not triggered"
            time.sleep(2)
    assert {r["run_type"] for r in runs["dag_runs"]} == {"asset_triggered"}
    promotion = wait_for_asset_run(live, "promote_challenger", timeout=300)
    trained = task_xcom(live, "forecast_training", run["dag_run_id"], "ingest")["config"]
    assert task_xcom(live, "promote_challenger", promotion["dag_run_id"], "target") == trained
    evaluation = task_xcom(live, "promote_challenger", promotion["dag_run_id"], "evaluate")
    registered = task_xcom(live, "forecast_training", run["dag_run_id"], "register")
    assert str(evaluation["challenger"]) == str(registered["version"])


def test_platform_prometheus_scrapes_serving(live_platform: Platform) -> None:
    live = live_platform
    answers = run_demo(live.urls["router"], state(live)["endpoint"], out=lambda _line: None)
    assert len(answers) >= 8
    deadline = time.monotonic() + 90
    while True:
        scraped = prometheus_query(live, "sum(tidemill_requests_total)")
        if scraped and float(scraped[0]["value"][1]) >= len(answers):
            break
        assert time.monotonic() < deadline, f"requests not scraped: {scraped}"
        time.sleep(1)
    up_jobs = {r["metric"]["job"]: r["value"][1] for r in prometheus_query(live, "up")}
    assert up_jobs == {"tidemill-router": "1", "tidemill-control-api": "1", "prometheus": "1"}
    rules = httpx.get(f"{live.urls['prometheus']}/api/v1/rules", timeout=10).json()
    loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert "TidemillDriftDetected" in loaded


def test_a_fresh_prometheus_scrapes_the_local_serving_stack(
    live_platform: Platform, tmp_path: Path
) -> None:
    """Integration: a throwaway Prometheus (monitoring.prometheus) on the serving stack."""
    live = live_platform
    router = live.urls["router"].removeprefix("http://")
    control = live.urls["control_api"].removeprefix("http://")
    config = render_config({"router": [router], "control": [control]})
    with PrometheusServer.start(config, tmp_path / "prom", timeout=60) as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        endpoint = state(live)["endpoint"]
        with httpx.Client(base_url=live.urls["router"], timeout=30) as client:
            body = client.get(f"/v1/models/{endpoint}/example").raise_for_status().json()
            for i in range(5):
                client.post(
                    f"/v1/models/{endpoint}:predict", json={**body, "user_id": f"e2e-{i}"}
                ).raise_for_status()
        [total] = prom.wait_for(
            'sum(tidemill_requests_total{job="router"})',
            lambda r: bool(r) and r[0]["value"] >= 5,
            timeout=60,
        )
        assert total["value"] >= 5
        prom.wait_for('up{job="control"} == 1', timeout=60)
        assert {t["labels"]["job"]: t["health"] for t in prom.targets()} == {
            "router": "up",
            "control": "up",
        }


def test_airflow_ui_lists_the_dags(live_platform: Platform, browser: Chromium) -> None:
    live = live_platform
    browser.goto(f"{live.urls['airflow']}/dags")
    browser.type_into("input[name=username]", AIRFLOW_USER)  # redirected to the login form
    browser.type_into("input[name=password]", airflow_password(live.home))
    browser.click("button[type=submit]:not([disabled])")
    text = browser.wait_for_text(*EXPECTED_DAGS, timeout=180)
    shot = browser.screenshot(ARTIFACTS / "airflow-dags.png")
    assert "/auth/login" not in browser.evaluate("location.href")
    assert all(dag in text for dag in EXPECTED_DAGS)
    assert shot.stat().st_size > 10_000


def test_mlflow_ui_shows_the_champion_alias(live_platform: Platform, browser: Chromium) -> None:
    browser.goto(live_platform.urls["model_page"])
    text = browser.wait_for_text(REGISTERED, "Version 1", "@ champion", timeout=120)
    shot = browser.screenshot(ARTIFACTS / "mlflow-model.png")
    assert "@ champion" in text
    assert shot.stat().st_size > 10_000


def readme_sdk_example(live: Platform, csv: Path) -> str:
    """The README's SDK example, pointed at this platform (home, port) and at ``csv``; each
    replaced text must be there, so a README that drifted fails here."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("```python\n", readme.index("A notebook, on a platform started with"))
    code = readme[start + len("```python\n") : readme.index("```\n", start + 10)]
    for old, new in (
        ('Path(".tidemill")', f"Path({str(live.home.root)!r})"),
        ('"http://127.0.0.1:8001"', repr(live.urls["platform_api"])),
        ('"data/ai4i2020.csv"', repr(str(csv))),
        ("api.wait(job.job_id)", "api.wait(job.job_id, timeout=420)"),
    ):
        assert old in code, f"README's SDK example no longer has {old}"
        code = code.replace(old, new)
    return code


def test_sdk_upload_clean_split_tune_wait_deploy_predict(
    live_platform: Platform, tmp_path: Path
) -> None:
    """The README's notebook flow, run as written, through the platform API that ``up``
    started: a real ``tabular_training`` DAG run through Airflow's REST API registers a model
    in MLflow (a run that fails in Airflow says why); deployed through the API, the running
    serving stack (started with the forecaster alone) serves it, and a prediction comes from
    the version the job registered."""
    from mlflow import MlflowClient

    live = live_platform
    token = (live.home.root / "serving" / "control_token").read_text().strip()
    target = "Machine failure"
    with TidemillClient(live.urls["platform_api"], token=token) as api:
        rare = ai4i_slice(300)
        rare = rare[(rare[target] == 0) | (rare.index.isin(rare.index[rare[target] == 1][:2]))]
        bad = api.upload_dataset(rare, name="ai4i-rare", target_column=target)
        doomed = api.train(bad.id, task="classification", algorithms=["logistic_regression"],
                           n_trials=1, cv_folds=2)  # fmt: skip

    csv = tmp_path / "ai4i-slice.csv"
    ai4i_slice(300).to_csv(csv, index=False)
    example: dict[str, Any] = {}
    exec(compile(readme_sdk_example(live, csv), "README.md (SDK example)", "exec"), example)
    with example["api"] as api:
        with pytest.raises(JobFailed) as failed:
            api.wait(doomed.job_id, timeout=300, progress=False)
        assert "fewer than 3 rows" in failed.value.job.error, failed.value.job.error
        assert failed.value.job.finished_at is not None

        done, answer = example["job"], example["answer"]
        name, version = done.model["name"], done.model["version"]
        live_versions = api.deployed(name, "live")
        rows = ai4i_slice(300).drop(columns=[target, *example["dropped"]]).dropna().tail(2)
        records = json.loads(rows.to_json(orient="records"))
        batch = api.predict(features=records, user_id="analyst-7", model_name=name)
        unknown = httpx.post(f"{live.urls['platform_api']}/api/ml/models/predict", timeout=30,
                             json={"features": records[0], "model_name": "no-such-model"})
    # by entity key: AI4I record 9's features come from the feature server up started
    ai4i = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig")
    [record_9] = json.loads(ai4i[ai4i["UDI"] == 9].drop(columns=[target, *example["dropped"]])
                            .to_json(orient="records"))  # fmt: skip
    by_key, nobody, sent = (
        httpx.post(f"{live.urls['router']}/predict/{name}", timeout=30, json=body)
        for body in ({"entity": {"UDI": 9}}, {"entity": {"UDI": 999_999}},
                     {"features": record_9}))
    assert (name, version) == ("ai4i-failure", "1") and done.dag_id == "tabular_training"
    assert [(v["version"], v["aliases"], v["weight"]) for v in live_versions] == [
        (version, ["challenger", "champion"], 100)]
    assert (answer["model_name"], answer["model_version"], answer["variant"]) == (
        name, version, "champion")
    assert answer["prediction"] in (0, 1) and 0.0 <= answer["prediction_proba"] <= 1.0
    assert batch["model_version"] == version and len(batch["prediction"]) == 2
    assert unknown.status_code == 404 and "no-such-model" in unknown.text, unknown.text
    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["model_version"] == version
    assert by_key.json()["prediction_proba"] == sent.json()["prediction_proba"]
    assert nobody.status_code == 404 and "999999" in nobody.text, nobody.text
    assert done.progress["fraction"] == 1.0
    assert done.started_at <= done.finished_at
    assert done.evaluation["algorithm"] == "logistic_regression"
    assert 0.0 <= done.evaluation["test"]["pr_auc"] <= 1.0
    assert 0.1 <= float(done.evaluation["params"]["C"]) <= 10  # tuned by Optuna in the DAG
    assert done.evaluation["cv_best_value"] is not None
    client = MlflowClient(live.home.mlflow_uri)
    run = client.get_run(done.model["run_id"])
    assert run.data.tags["tidemill.pipeline_run"] == done.dag_run_id
    assert run.data.metrics["test_pr_auc"] == done.evaluation["test"]["pr_auc"]

    # its registration's Asset event scheduled tabular_promotion, which read the model to
    # judge from the event (an asset-triggered run has no trigger-form model_name)
    promotion = wait_for_asset_run(live, "tabular_promotion", timeout=240)
    target = task_xcom(live, "tabular_promotion", promotion["dag_run_id"], "target")
    assert (target["name"], target["version"]) == (name, version), target
    applied = task_xcom(live, "tabular_promotion", promotion["dag_run_id"], "apply")
    assert applied["action"] == "none" and "champion and challenger" in applied["reason"]


def test_down_stops_everything_it_started(live_platform: Platform) -> None:
    live = live_platform
    recorded = state(live)["processes"]
    pgids = {r["pgid"] for r in recorded}
    members = group_members(pgids)
    assert {r["pid"] for r in recorded} <= members.keys()

    stopped = down(live.home, out=lambda _line: None)
    assert sorted(stopped) == sorted(r["name"] for r in recorded)
    assert not (live.home.root / "platform.json").exists()
    assert group_members(pgids) == {}
    for port in (
        live.ports.airflow,
        live.ports.mlflow,
        live.ports.router,
        live.ports.control,
        live.ports.prometheus,
        live.ports.platform_api,
        live.ports.features,
    ):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert down(live.home, out=lambda _line: None) == []
    assert status(live.home, out=lambda _line: None) == {}
