"""The no-shared-disk platform: real SeaweedFS (S3), PostgreSQL, an MLflow tracking server with
proxied artifacts on S3, and an Airflow API server whose tasks run through
``tests.nosharing.executor.IsolatedTaskExecutor`` (a fresh process, working directory and
Tidemill home per task, like KubernetesExecutor pods)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import ObjectStore, Postgres, free_port, postgres, seaweedfs, stop

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "tidemill"
MODEL = "ns-forecaster"
CONFIG = {
    "name": "nosharing",
    "data": {
        "source": {"kind": "csv", "path": str(REPO / "data" / "ETTh1.csv")},
        "time_column": "date", "target_column": "OT", "series_id": "ETTh1", "freq": "h",
        "rows": {"start": 0, "stop": 2400},
    },
    "split": {"val_size": 400, "test_size": 300},
    "horizon": 12,
    "algorithms": {
        "seasonal_naive": {"params": {"season": 24}},
        "nlinear": {"params": {"lookback": 48},
                    "search_space": {"alpha": {"type": "float", "low": 0.1, "high": 100,
                                               "log": True}}},
    },
    "tuning": {"n_trials": 1, "cv_folds": 2, "seed": 7, "max_origins_per_fold": 40},
    "mlflow": {"experiment": "nosharing", "registered_model_name": MODEL},
}  # fmt: skip


def _wait_http(url: str, what: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text()[-4000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    tail = log.read_text()[-4000:]
    raise RuntimeError(f"{what} did not answer {url} in {timeout:.0f} s:\n{tail}")


def _start_mlflow(root: Path, backend: str, s3: ObjectStore, port: int) -> subprocess.Popen:
    """``mlflow server`` on PostgreSQL with artifacts proxied to the bucket."""
    with open(root / "mlflow.log", "a") as log:
        return subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", backend,
             "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env={**os.environ, **s3.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _mlflow_server(platform: Platform) -> subprocess.Popen:
    """Start the platform's MLflow server again (same port) and wait until it answers."""
    port = int(platform.mlflow_url.rsplit(":", 1)[1])
    proc = _start_mlflow(platform.root, platform.urls["mlflow"], platform.s3, port)
    _wait_http(f"{platform.mlflow_url}/health", "mlflow server", proc,
               platform.root / "mlflow.log", 180)
    return proc


@dataclass
class Platform:
    root: Path
    s3: ObjectStore
    pg: Postgres
    urls: dict[str, str]
    mlflow_url: str
    airflow_env: dict[str, str]
    config: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        return f"s3://{BUCKET}/store"

    @property
    def task_env(self) -> dict[str, str]:
        """All a task gets: URLs and credentials (what the Helm values give a pod)."""
        return {
            **self.s3.env,
            "TIDEMILL_ARTIFACT_STORE_URL": self.store_url,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "TIDEMILL_OPTUNA_STORAGE_URL": self.urls["optuna"],
            "TIDEMILL_PREDICTION_LOG_URL": self.urls["predlog"],
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
                self.airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"],
            # an unreachable MLflow fails the task within seconds; Airflow retries it
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore",
        }  # fmt: skip

    def run_dag(self, dag_id: str, conf: dict[str, Any], timeout: float = 900) -> \
            subprocess.CompletedProcess[str]:
        """``airflow dags test --use-executor``: the DAG's tasks go to the isolated executor."""
        env = {**self.airflow_env, "NOSHARING_TASK_ENV": json.dumps(self.task_env)}
        return subprocess.run(
            [str(BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf),
             "--use-executor"],
            env=env, cwd=self.root, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def task_records(self) -> list[dict[str, Any]]:
        path = self.root / "tasks.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def task_log(self, name_part: str, run_id: str = "") -> str:
        """The logs of the task attempts named like ``name_part`` (of run ``run_id`` if given;
        the file name holds the run id as the executor writes it)."""
        run = "".join(c if c.isalnum() else "_" for c in run_id)
        pattern = f"*{name_part}*{run}*" if run else f"*{name_part}*"
        return "\n".join(p.read_text() for p in sorted((self.root / "task-logs").glob(pattern)))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    started = time.monotonic()
    root = tmp_path_factory.mktemp("nosharing")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with seaweedfs(root / "s3") as s3, postgres() as pg:
        s3.make_bucket(BUCKET)
        urls = {db: pg.create_database(db) for db in ("airflow", "mlflow", "optuna", "predlog")}
        procs: dict[str, subprocess.Popen] = {}
        try:
            mlflow_port = free_port()
            procs["mlflow"] = _start_mlflow(root, urls["mlflow"], s3, mlflow_port)
            api_port = free_port()
            airflow_env = {
                k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))
            } | {
                "AIRFLOW_HOME": str(root / "airflow"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["airflow"],
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": urls["airflow"],
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "tests.nosharing.executor.IsolatedTaskExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
                    f"http://127.0.0.1:{api_port}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": "nosharing-jwt-secret-0123456789abcdef",
                "AIRFLOW__API__SECRET_KEY": "nosharing-api-secret",
                "PYTHONPATH": str(REPO),
                "NOSHARING_RECORD": str(root / "tasks.jsonl"),
                "NOSHARING_LOGS": str(root / "task-logs"),
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
                "PYTHONWARNINGS": "ignore",
                # the DAGs retry after 5 s, not 20-30 s (read where the retry is scheduled)
                "TIDEMILL_TASK_RETRY_DELAY_S": "5",
            }  # fmt: skip
            subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_env, check=True,
                           capture_output=True, timeout=600)
            api_log = root / "api-server.log"
            with open(api_log, "w") as log:
                procs["api"] = subprocess.Popen(
                    [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port",
                     str(api_port), "--workers", "1"],
                    env=airflow_env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            _wait_http(f"http://127.0.0.1:{mlflow_port}/health", "mlflow server",
                       procs["mlflow"], root / "mlflow.log", 180)
            _wait_http(f"http://127.0.0.1:{api_port}/api/v2/version", "airflow api-server",
                       procs["api"], api_log, 240)
            platform = Platform(root, s3, pg, urls, f"http://127.0.0.1:{mlflow_port}",
                                airflow_env, config, procs)
            print(f"[nosharing] platform up in {time.monotonic() - started:.0f} s", flush=True)
            yield platform
        finally:
            for proc in procs.values():
                stop(proc)
