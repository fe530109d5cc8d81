"""The shipped configs and data are found where TIDEMILL_PROJECT_DIR says (the Airflow image
copies them to /opt/tidemill, away from the installed packages)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CODE = ("from pipelines.feature_sources import SHIPPED_SOURCES; "
        "print(*SHIPPED_SOURCES.values(), sep='\\n')")


def _sources(env: dict[str, str]) -> list[Path]:
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                         text=True, check=True).stdout
    return [Path(line) for line in out.splitlines()]


def test_feature_sources_follow_the_project_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TIDEMILL_PROJECT_DIR"}
    shipped = _sources(env)
    assert all(p.is_file() for p in shipped), shipped
    copy = tmp_path / "opt-tidemill"
    (copy / "data").mkdir(parents=True)
    for p in shipped:
        shutil.copy(p, copy / "data" / p.name)
    moved = _sources({**env, "TIDEMILL_PROJECT_DIR": str(copy)})
    assert moved == [copy / "data" / p.name for p in shipped]
    assert all(p.is_file() for p in moved)
