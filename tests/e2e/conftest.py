"""The platform as users see it: a small model trained into a temp home, ``tidemill up`` on
free loopback ports, Chromium for the UIs; screenshots go to ``test-artifacts/e2e/``."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from monitoring.prometheus import free_port
from pipelines.home import TidemillHome
from tests.e2e.chromium import Chromium
from tests.integration.conftest import SMALL_CONFIG
from tidemill.platform import Ports, down, up

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts" / "e2e"
REGISTERED = "e2e-forecaster"
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Platform:
    home: TidemillHome
    ports: Ports
    urls: dict[str, str]
    up_lines: tuple[str, ...] = ()  # what ``up`` printed


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    """Debian's chromium, installed by scripts/install-chromium.sh when missing."""
    if not CHROMIUM.exists():
        subprocess.run([str(REPO / "scripts" / "install-chromium.sh")], check=True)
    assert CHROMIUM.exists(), "no /usr/bin/chromium after scripts/install-chromium.sh"
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def prometheus_installed() -> None:
    """Debian's prometheus on PATH (scripts/install-prometheus.sh when missing)."""
    if shutil.which("prometheus") is None:
        subprocess.run([str(REPO / "scripts" / "install-prometheus.sh")], check=True)
    assert shutil.which("prometheus"), "no prometheus after scripts/install-prometheus.sh"


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def live_platform(
    tmp_path_factory: pytest.TempPathFactory, prometheus_installed: None
) -> Iterator[Platform]:
    """A champion trained by ``tidemill train`` (nlinear + seasonal_naive, one trial), then the
    whole platform up on free ports; ``down`` at the end (a no-op when a test already did)."""
    home = TidemillHome.resolve(tmp_path_factory.mktemp("platform-home"))
    config = copy.deepcopy(SMALL_CONFIG)
    config["algorithms"] = {k: config["algorithms"][k] for k in ("nlinear", "seasonal_naive")}
    config["mlflow"] = {"experiment": "e2e", "registered_model_name": REGISTERED}
    config_path = home.root / "e2e.yaml"
    config_path.write_text(yaml.safe_dump(config))
    subprocess.run(
        [
            str(BIN / "tidemill"),
            "train",
            "--config",
            str(config_path),
            "--home",
            str(home.root),
            "--trials",
            "1",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    ports = Ports(*distinct_free_ports(7))
    lines: list[str] = []

    def out(line: str) -> None:
        print(line)
        lines.append(line)

    urls = up(home, ports, timeout=480, out=out)
    try:
        yield Platform(home, ports, urls, tuple(lines))
    finally:
        down(home)


@pytest.fixture(scope="module")
def browser(chromium_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    with Chromium(chromium_bin, tmp_path_factory.mktemp("chromium")) as chromium:
        yield chromium
