"""A throwaway Prometheus for tests and local runs: config, process and HTTP API queries.

``render_config`` writes a minimal prometheus.yml for scrape targets on 127.0.0.1;
``PrometheusServer.start`` runs the ``prometheus`` binary (``scripts/install-prometheus.sh``
installs it) bound to 127.0.0.1 with its TSDB in a scratch folder; ``query``/``wait_for`` read
its HTTP API. Only loopback addresses are accepted, for targets and for the server.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOOPBACK = "127.0.0.1"
Sample = dict[str, Any]


def render_config(
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    rule_files: Sequence[Path] = (),
    metrics_path: str = "/metrics",
) -> str:
    """prometheus.yml text: one scrape job per ``{job: ["127.0.0.1:port", ...]}`` entry."""
    for job, addresses in targets.items():
        for address in addresses:
            host = urllib.parse.urlsplit(f"//{address}").hostname or ""
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(f"job {job!r}: target {address!r} is not a loopback IP:port")
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": metrics_path,
                "static_configs": [{"targets": list(addresses)}],
            }
            for job, addresses in targets.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class PrometheusServer:
    """A running ``prometheus`` process; use as a context manager or call ``stop``."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    @classmethod
    def start(
        cls,
        config_text: str,
        workdir: Path,
        *,
        binary: str = "prometheus",
        port: int | None = None,
        timeout: float = 30.0,
    ) -> PrometheusServer:
        """Write the config to ``workdir``, start the server and wait until it is ready."""
        executable = shutil.which(binary)
        if executable is None:
            raise FileNotFoundError(f"{binary} not found: run scripts/install-prometheus.sh")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(config_text)
        port = port or free_port()
        with (workdir / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        server = cls(process, port, workdir)
        try:
            server._wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (kill it after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; raises on an error status."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[Sample]:
        """Instant query: ``[{"metric": {...}, "value": float}, ...]`` (vector results)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def wait_for(
        self,
        expr: str,
        condition: Callable[[list[Sample]], bool] = bool,
        timeout: float = 30.0,
        poll: float = 0.25,
    ) -> list[Sample]:
        """Query until ``condition(result)`` holds (default: non-empty); TimeoutError if not."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if condition(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} still {result} after {timeout}s")
            time.sleep(poll)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their ``health`` and ``lastError``."""
        return self.api("targets")["activeTargets"]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode}: "
                    f"{self.log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready on {self.url} after {timeout}s")
            time.sleep(0.2)
