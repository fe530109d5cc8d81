"""``down`` signals only what ``up`` recorded and is still that process; ``up`` refuses busy
ports before starting anything. Fast: a ``sleep`` stands in for a service."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitoring.prometheus import free_port
from pipelines.home import TidemillHome
from tidemill.platform import STATE_FILE, PlatformError, Ports, _record, down, status, up


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session, as ``up`` starts its services."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def record_platform(home: TidemillHome, record: dict) -> None:
    state = {"home": str(home.root), "urls": {}, "processes": [record]}
    (home.root / STATE_FILE).write_text(json.dumps(state))


def test_down_never_signals_a_reused_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    home = TidemillHome.resolve(tmp_path / "home")
    record = _record("svc", sleeper.pid, ["sleep", "300"], tmp_path / "svc.log")
    record_platform(home, {**record, "start_time": record["start_time"] - 1})  # PID reused
    assert status(home, out=lambda _line: None) == {"svc": False}
    assert down(home, timeout=2, out=lambda _line: None) == []
    assert sleeper.poll() is None, "a process that is not the recorded one was signalled"
    assert not (home.root / STATE_FILE).exists()

    record_platform(home, record)
    assert status(home, out=lambda _line: None) == {"svc": True}
    assert down(home, timeout=10, out=lambda _line: None) == ["svc"]
    sleeper.wait(10)  # down may have reaped it already (it is this process's child)
    assert not Path(f"/proc/{sleeper.pid}").exists()


def test_up_refuses_busy_ports_before_starting_anything(tmp_path: Path) -> None:
    home = TidemillHome.resolve(tmp_path / "home")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = Ports(
            airflow=port,
            mlflow=free_port(),
            router=free_port(),
            control=free_port(),
            prometheus=free_port(),
        )
        with pytest.raises(PlatformError, match=f"airflow {port}"):
            up(home, ports, out=lambda _line: None)
    assert not (home.root / STATE_FILE).exists()
    assert not (home.root / "logs").exists()
