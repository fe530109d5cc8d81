"""forecast_training, drift_monitor and promote_challenger with no shared disk.

Every task runs in its own fresh process, empty working directory and scratch Tidemill home
(deleted when it ends), talking only to SeaweedFS (S3), PostgreSQL (Airflow metadata and XCom,
MLflow backend, Optuna, prediction log) and an MLflow server with proxied S3 artifacts. The
serving stack loads the registered model through MLflow from S3 and logs its predictions to
PostgreSQL; drift reads them back; promotion moves the aliases.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from pipelines import artifact_store
from tests.servers import free_port, stop

from .conftest import MODEL, REPO, Platform, _mlflow_server

SERVING_PYTHON = REPO / ".venv" / "serving" / "bin" / "python"


def _dag_states(platform: Platform, dag_id: str) -> list[str]:
    engine = sa.create_engine(platform.urls["airflow"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select state from dag_run where dag_id = :d order by id"), {"d": dag_id}).all()
    engine.dispose()
    return [r[0] for r in rows]


def _xcom_strings(platform: Platform, dag_id: str = "%", task_id: str = "%") -> list[str]:
    engine = sa.create_engine(platform.urls["airflow"])
    with engine.connect() as conn:
        values = [r[0] for r in conn.execute(sa.text(
            "select value from xcom where dag_id like :d and task_id like :t"),
            {"d": dag_id, "t": task_id}).all()]
    engine.dispose()
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            try:
                parsed = json.loads(v)
            except ValueError:
                found.append(v)
                return
            if isinstance(parsed, str):
                found.append(parsed)
            else:
                walk(parsed)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    for value in values:
        walk(value)
    return found


@pytest.fixture(autouse=True)
def _s3_client_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process reads the bucket too (to check what the tasks wrote)."""
    for key, value in platform.s3.env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def trained(platform: Platform) -> Platform:
    """Two forecast_training runs: version 1 (champion) on the healthy platform, version 2
    (challenger) through the outages of ``_run_through_faults`` (their checks are
    test_store_and_mlflow_down_mid_run_fail_clearly_and_retry): the faults need no third run."""
    _run_training(platform, "no-shared-disk run 1")
    _run_through_faults(platform)
    return platform


def _run_training(platform: Platform, reason: str, timeout: float = 900) -> None:
    started = time.monotonic()
    proc = platform.run_dag("forecast_training", {"config": str(platform.config),
                                                  "reason": reason}, timeout=timeout)
    print(f"[nosharing] forecast_training ({reason}): {time.monotonic() - started:.0f} s",
          flush=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert _dag_states(platform, "forecast_training")[-1] == "success", (
        (proc.stdout + proc.stderr)[-4000:] + platform.task_log("forecast_training")[-8000:])


def _when(platform: Platform, task: str, skip: int, timeout: float = 900) -> None:
    """Wait until the task attempt ``task`` (``dag.task.map_index.try``) has ended, looking at
    the task records after the first ``skip`` (the earlier runs')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["task"] == task for r in platform.task_records()[skip:]):
            return
        time.sleep(0.5)
    raise AssertionError(f"{task} did not end within {timeout:.0f} s")


def _run_through_faults(platform: Platform) -> None:
    """forecast_training with S3 down when the run starts (started again once ingest's first try
    ended) and the MLflow server stopped once training is done (started again once register's
    first try ended); what the checks need goes into ``platform.faults``. S3 is stopped before
    the run, not once ingest ends: a quiet machine started preprocess, and read the store,
    before a stop there took effect. The DAGs' retry delay is short here
    (TIDEMILL_TASK_RETRY_DELAY_S); a retry that still finds a server down fails the same way
    and the next one succeeds."""
    client = MlflowClient(platform.mlflow_url, registry_uri=platform.mlflow_url)
    before = sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'"))
    skip = len(platform.task_records())
    errors: list[BaseException] = []

    def faults() -> None:
        try:
            _when(platform, "forecast_training.ingest.-1.1", skip)
            platform.s3.start()
            # stopped before select starts (select needs no MLflow), so register finds it down
            _when(platform, "forecast_training.train.0.1", skip)
            _when(platform, "forecast_training.train.1.1", skip)
            stop(platform.procs["mlflow"])
            _when(platform, "forecast_training.register.-1.1", skip)
            platform.faults["versions_while_down"] = sorted(_versions_in_db(platform))
            platform.procs["mlflow"] = _mlflow_server(platform)
        except BaseException as exc:  # reported below
            errors.append(exc)

    platform.s3.stop()
    thread = threading.Thread(target=faults, daemon=True)
    thread.start()
    try:
        _run_training(platform, "faults", timeout=1500)
    finally:
        thread.join(120)
    assert not errors, errors
    records = platform.task_records()[skip:]
    new = {v.version: client.get_model_version(MODEL, v.version)  # search leaves out aliases
           for v in client.search_model_versions(f"name='{MODEL}'") if v.version not in before}
    platform.faults |= {"before": before, "records": records, "run": records[0]["run"],
                        "new": {k: (v.status, sorted(v.aliases)) for k, v in new.items()}}


def test_training_registers_from_the_object_store(trained: Platform) -> None:
    client = MlflowClient(trained.mlflow_url, registry_uri=trained.mlflow_url)
    v1 = client.get_model_version(MODEL, "1")
    v2 = client.get_model_version(MODEL, "2")
    assert sorted(v1.aliases) == ["champion"] and sorted(v2.aliases) == ["challenger"]
    for mv in (v1, v2):
        assert mv.tags["tidemill.snapshot_url"].startswith(f"{trained.store_url}/runs/")
        assert artifact_store.exists(mv.tags["tidemill.snapshot_url"])
        assert client.get_model_version_download_uri(MODEL, mv.version).startswith(
            "mlflow-artifacts:/")
    run = client.get_run(v1.run_id)
    assert "plots/forecast_vs_actual.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    # the MLflow server keeps the artifacts in the bucket
    fs, _ = artifact_store.filesystem("s3://tidemill/mlflow")
    assert any(p.endswith("MLmodel") for p in fs.find("tidemill/mlflow"))


def test_every_task_ran_alone_and_handed_over_only_urls(trained: Platform) -> None:
    records = trained.task_records()
    attempts = [(r["run"], r["task"]) for r in records]
    assert len(attempts) == len(set(attempts)) >= 18  # 9 tasks per run, each its own process
    assert len({r["pid"] for r in records}) == len(records)
    assert len({r["scratch"] for r in records}) == len(records)
    assert all(not Path(r["scratch"]).exists() for r in records)  # deleted before the next
    strings = _xcom_strings(trained)
    assert any(s.startswith(f"{trained.store_url}/runs/") for s in strings)
    local = [s for s in strings if s.startswith("/") and not s.startswith(str(REPO))
             and s != str(trained.config)]
    assert local == [], local


@pytest.fixture(scope="module")
def serving(trained: Platform) -> Any:
    """The local serving stack (its own home) on the registry; predictions into PostgreSQL; its
    control API re-exports the job metrics (drift gauges) from the artifact store."""
    home = trained.root / "serving-home"
    port, control = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    env |= trained.s3.env | {"MLFLOW_TRACKING_URI": trained.mlflow_url,
            "TIDEMILL_ARTIFACT_STORE_URL": trained.store_url,
            "TIDEMILL_PREDICTION_LOG_URL": trained.urls["predlog"],
            "TIDEMILL_CONTROL_TOKEN": "nosharing-token", "TIDEMILL_REGISTERED_MODEL": MODEL}
    log = trained.root / "serving.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(SERVING_PYTHON), "-m", "serving.stack", "--home", str(home), "--port", str(port),
             "--control-port", str(control), "--workers", "1", "--challenger-percent", "50"],
            env=env, cwd=trained.root, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (home / "serving" / "stack.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{port}", proc, log, f"http://127.0.0.1:{control}"
    finally:
        stop(proc)


def test_serving_logs_to_postgres_and_drift_reads_it_back(trained: Platform, serving) -> None:
    """...and drift keeps nothing in its pod: reports, the Evidently workspace and the gauges
    are objects in the bucket, and the control API (another process, its own home) serves the
    gauges on its /metrics."""
    router, _, log, control = serving
    endpoint = "tidemill-forecaster"
    with httpx.Client(timeout=60) as http:
        example = http.get(f"{router}/v1/models/{endpoint}/example").json()["instances"][0]
        for user in range(40):
            r = http.post(f"{router}/v1/models/{endpoint}:predict",
                          json={"instances": [example]}, headers={"x-user-id": f"user-{user}"})
            assert r.status_code == 200, r.text
    engine = sa.create_engine(trained.urls["predlog"])
    deadline = time.monotonic() + 60
    rows = 0
    while rows < 40 and time.monotonic() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select count(*) from prediction_requests")).scalar()
        time.sleep(0.5)
    engine.dispose()
    assert rows == 40, log.read_text()[-3000:]

    proc = trained.run_dag("drift_monitor", {"config": str(trained.config), "since_hours": 24})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert _dag_states(trained, "drift_monitor")[-1] == "success", trained.task_log(
        "drift_monitor")[-8000:]
    check = trained.task_log("drift_monitor.check")
    assert "drift_monitor:" in check and "(report s3://tidemill/store/reports/" in check, check[
        -4000:]
    fs, _ = artifact_store.filesystem(trained.store_url)
    reports = fs.find("tidemill/store/reports")
    assert any(p.endswith("prediction_drift.html") for p in reports), reports
    workspace = [p for p in reports if "/evidently-workspace/" in p]
    assert any("/snapshots/" in p for p in workspace) and any(
        p.endswith("metadata.json") for p in workspace), workspace
    gauges = artifact_store.read_text(f"{trained.store_url}/metrics/drift-{MODEL}.prom")
    assert f'tidemill_drift_detected{{model="{MODEL}"' in gauges, gauges
    scraped = httpx.get(f"{control}/metrics", timeout=30).text
    assert f'tidemill_drift_detected{{model="{MODEL}"' in scraped, scraped[-3000:]
    local = [s for s in _xcom_strings(trained, "drift_monitor", "check") if s.startswith("/")
             and not s.startswith(str(REPO)) and s != str(trained.config)]
    assert local == [], local


def test_promotion_moves_the_aliases(trained: Platform, serving) -> None:
    proc = trained.run_dag("promote_challenger", {"config": str(trained.config),
                                                  "min_samples": 2, "backtest_rows": 200})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert _dag_states(trained, "promote_challenger")[-1] == "success", trained.task_log(
        "promote_challenger")[-8000:]
    client = MlflowClient(trained.mlflow_url, registry_uri=trained.mlflow_url)
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags["tidemill.promotion_decided_by"].startswith("airflow:promote_challenger:")
    aliases = client.get_registered_model(MODEL).aliases
    decision = trained.task_log("promote_challenger.apply")
    if "version 2 promoted" in decision:
        assert aliases["champion"] == "2" and aliases["previous_champion"] == "1"
    else:
        assert aliases["champion"] == "1", decision[-3000:]


def test_store_and_mlflow_down_mid_run_fail_clearly_and_retry(trained: Platform) -> None:
    """The second training run (``_run_through_faults``): S3 is down when it starts (ingest's
    first try fails naming the URL, nothing is written; the retry after the restart succeeds);
    the MLflow server stops once training is done (register's first try fails, nothing is
    half-registered, the retry registers exactly one version)."""
    faults = trained.faults
    tries = {r["task"] for r in faults["records"]}
    assert {"forecast_training.ingest.-1.2", "forecast_training.register.-1.2"} <= tries
    first = trained.task_log("forecast_training.ingest.-1.1", faults["run"])
    assert "artifact store error while trying to" in first, first[-3000:]
    assert "s3://tidemill/store/runs/" in first, first[-3000:]
    register = trained.task_log("forecast_training.register.-1.1", faults["run"])
    assert trained.mlflow_url.split("//")[1] in register, register[-3000:]
    # nothing half-registered while MLflow was down; one new version after the retry
    assert faults["versions_while_down"] == faults["before"]
    assert list(faults["new"].values()) == [("READY", ["challenger"])], faults["new"]


def _versions_in_db(platform: Platform) -> list[str]:
    engine = sa.create_engine(platform.urls["mlflow"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select version from model_versions where name = :n"),
                            {"n": MODEL}).all()
    engine.dispose()
    return [str(r[0]) for r in rows]


def test_postgres_restart_while_serving_logs(trained: Platform, serving) -> None:
    """PostgreSQL stops while the stack serves: requests keep being answered, the writer holds
    the rows, and once the server is back every row is written (measured, printed)."""
    router, _, log, _ = serving
    endpoint = "tidemill-forecaster"
    engine = sa.create_engine(trained.urls["predlog"], pool_pre_ping=True)

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("select count(*) from prediction_requests")).scalar()

    before = count()
    engine.dispose()
    sent = 0
    with httpx.Client(timeout=60) as http:
        example = http.get(f"{router}/v1/models/{endpoint}/example").json()["instances"][0]
        trained.pg.stop()
        try:
            for user in range(30):
                r = http.post(f"{router}/v1/models/{endpoint}:predict",
                              json={"instances": [example]}, headers={"x-user-id": f"pg-{user}"})
                assert r.status_code == 200, r.text
                sent += 1
            time.sleep(2)
        finally:
            trained.pg.start()
    deadline = time.monotonic() + 90
    written = count() - before
    while written < sent and time.monotonic() < deadline:
        time.sleep(1)
        written = count() - before
    engine.dispose()
    print(f"[nosharing] PostgreSQL restart: {sent} requests served while it was down, "
          f"{written} rows written after the restart, {sent - written} lost", flush=True)
    assert written == sent, log.read_text()[-3000:]
