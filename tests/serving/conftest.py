"""A real registered model (two versions, trained by the real pipeline in the orchestrator
environment) and a real local serving stack (``python -m serving.stack``) on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TIDEMILL = REPO / ".venv" / "orchestrator" / "bin" / "tidemill"
ENDPOINT = "tidemill-forecaster"
REGISTERED = "serving-test-forecaster"
CONFIG = {
    "name": "serving-small",
    "data": {
        "source": {"kind": "csv", "path": str(REPO / "data" / "ETTh1.csv")},
        "time_column": "date", "target_column": "OT", "series_id": "ETTh1", "freq": "h",
        "rows": {"start": 0, "stop": 2400},
    },
    "split": {"val_size": 400, "test_size": 300},
    "horizon": 12,
    "algorithms": {"nlinear": {"params": {"lookback": 48}},
                   "seasonal_naive": {"params": {"season": 24}}},
    "tuning": {"n_trials": 1, "cv_folds": 2, "seed": 7, "max_origins_per_fold": 40},
    "mlflow": {"experiment": "serving-tests", "registered_model_name": REGISTERED},
}


TABULAR_ENDPOINT = "tidemill-classifier"
TABULAR_REGISTERED = "serving-test-classifier"
TABULAR_FEATURES = ["Type", "Air temperature", "Process temperature", "Rotational speed",
                    "Torque", "Tool wear"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tidemill home with version 1 (nlinear, champion) and 2 (seasonal_naive, challenger)."""
    root = tmp_path_factory.mktemp("serving-home")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for algorithm in ("nlinear", "seasonal_naive"):
        subprocess.run(
            [str(TIDEMILL), "train", "--config", str(config), "--home", str(root / "home"),
             "--trials", "1", "--algorithms", algorithm],
            cwd=root, env=env, check=True, capture_output=True, timeout=300,
        )
    return root / "home"


def _tabular_config() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"]["source"]["path"] = str(REPO / "data" / "ai4i2020.csv")
    data["data"]["rows"] = {"start": 0, "stop": 2000}
    data["algorithms"] = {"logistic_regression": {"params": {"C": 1.0}},
                          "decision_tree": {"params": {"max_depth": 4}}}
    data["tuning"] |= {"n_trials": 1}
    data["cv"] = {"method": "stratified", "folds": 2}
    data["mlflow"] = {"experiment": "serving-tabular", "registered_model_name": TABULAR_REGISTERED}
    return data


@pytest.fixture(scope="session")
def tabular_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AI4I classifier trained on rows 0-2000: version 1 (logistic regression, champion)
    and 2 (decision tree, challenger)."""
    root = tmp_path_factory.mktemp("tabular-home")
    config = root / "ai4i.yaml"
    config.write_text(yaml.safe_dump(_tabular_config()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for algorithm in ("logistic_regression", "decision_tree"):
        subprocess.run(
            [str(TIDEMILL), "train", "--config", str(config), "--home", str(root / "home"),
             "--trials", "1", "--algorithms", algorithm],
            cwd=root, env=env, check=True, capture_output=True, timeout=300,
        )
    return root / "home"


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    home: Path
    router: str
    control: str
    token: str
    log: Path

    def stop(self) -> int:
        """SIGTERM (graceful, as an operator would), then make sure nothing is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def router_connections(self) -> dict[int, int]:
        """Established router connections: the client's port -> the pid of the worker holding it."""
        port = urlsplit(self.router).port
        held_by: dict[int, int] = {}
        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            try:  # a child may exit meanwhile: a killed worker (a zombie), a short-lived compile
                conns = proc.connections("tcp")
            except psutil.NoSuchProcess:  # ZombieProcess is a subclass
                continue
            for conn in conns:
                if conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED:
                    held_by[conn.raddr.port] = proc.pid
        return held_by


def start_stack(home: Path, challenger_percent: int, log: Path,
                extra: tuple[str, ...] = (), settings: dict[str, str] | None = None) -> Stack:
    port, control_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    env["TIDEMILL_CONTROL_TOKEN"] = "test-token-123"
    env.update(settings or {})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving.stack", "--home", str(home), "--port", str(port),
             "--control-port", str(control_port), "--workers", "2",
             "--challenger-percent", str(challenger_percent), *extra],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    stack = Stack(proc, home, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{control_port}",
                  "test-token-123", log)
    deadline = time.monotonic() + 240
    while not (home / "serving" / "stack.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise RuntimeError(f"stack did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)
    return stack


@pytest.fixture(scope="session")
def stack(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("logs") / "stack.log"
    running = start_stack(trained_home, 30, log)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


@pytest.fixture(scope="session")
def history(stack: Stack, client: httpx.Client) -> dict[str, Any]:
    """A history window both versions can forecast from (the champion's input example)."""
    body = client.get(f"{stack.router}/v1/models/{ENDPOINT}/example").json()
    return body["instances"][0]


def v1(history: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"instances": [dict(history)], **extra}


def predictions_rows(home: Path) -> list[dict[str, Any]]:
    """Every logged forecast window of the stack's prediction log, one dict each."""
    from serving.prediction_log.reader import logged_windows
    from serving.prediction_log.schema import engine_for

    return logged_windows(engine_for(f"sqlite:///{home / 'prediction_log.db'}")).to_dict(
        "records")


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def dumps(obj: Any) -> str:
    return json.dumps(obj)
