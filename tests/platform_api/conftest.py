"""The platform API as a real uvicorn process (serving environment) on a free loopback port,
with its SQLite database and artifact store in a temporary Tidemill home."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from monitoring.prometheus import free_port

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = REPO / ".venv" / "serving" / "bin" / "python"
TOKEN = "platform-test-token"
AI4I = REPO / "data" / "ai4i2020.csv"


@dataclass
class ApiServer:
    proc: subprocess.Popen[bytes]
    url: str
    home: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_api(home: Path, log: Path, **env_extra: str) -> ApiServer:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    env.update({"TIDEMILL_HOME": str(home), "TIDEMILL_CONTROL_TOKEN": TOKEN, **env_extra})
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(SERVING_PYTHON), "-m", "uvicorn", "serving.platform_api.app:app",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = ApiServer(proc, f"http://127.0.0.1:{port}", home, log)
    if answers_ok(f"{server.url}/healthz", proc, 120):
        return server
    server.stop()
    raise RuntimeError(f"platform API did not start:\n{log.read_text()[-4000:]}")


def answers_ok(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll ``url`` until it answers 200 (True), or until ``proc`` exits or ``timeout``
    seconds pass (False); refused connections mean not yet."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    root = tmp_path_factory.mktemp("platform-api")
    nothing_there = f"http://127.0.0.1:{free_port()}"  # no Airflow: jobs cannot start
    server = start_api(root / "home", root / "api.log", TIDEMILL_MAX_UPLOAD_MB="1",
                       TIDEMILL_AIRFLOW_URL=nothing_there, TIDEMILL_AIRFLOW_PASSWORD="x")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:  # fmt: skip
        yield client


def ai4i_slice(rows: int = 600) -> pd.DataFrame:
    """AI4I 2020 rows with every failure (so classes are not too rare) and some gaps."""
    frame = pd.read_csv(AI4I, encoding="utf-8-sig")
    failures = frame[frame["Machine failure"] == 1].head(rows // 10)
    ok = frame[frame["Machine failure"] == 0].head(rows - len(failures))
    sample = pd.concat([ok, failures]).sort_values("UDI").reset_index(drop=True)
    sample.loc[[3, 17, 40], "Torque"] = None
    sample.loc[[5, 9], "Type"] = None
    return sample
