"""Shared fixtures of the monitoring tests: ETTh1 in long format and the Prometheus binaries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from monitoring.drift import DriftConfig, DriftResult, VariantQuality

ROOT = Path(__file__).resolve().parents[2]
EXOG = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]


@pytest.fixture(scope="session")
def etth1_long() -> pd.DataFrame:
    """ETTh1 as ``unique_id, ds, y`` + the six load columns (OT is the target)."""
    raw = pd.read_csv(ROOT / "data" / "ETTh1.csv")
    return pd.DataFrame(
        {"unique_id": "ETTh1", "ds": pd.to_datetime(raw["date"]), "y": raw["OT"]}
        | {c: raw[c].astype(float) for c in EXOG}
    )


@pytest.fixture(scope="session")
def prometheus_bin() -> dict[str, str]:
    """Paths of ``promtool`` and ``prometheus``, installed by scripts/install-prometheus.sh."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        subprocess.run([str(ROOT / "scripts" / "install-prometheus.sh")], check=True)
    tools = {name: shutil.which(name) for name in ("promtool", "prometheus")}
    missing = [name for name, path in tools.items() if path is None]
    assert not missing, f"{missing} not on PATH after scripts/install-prometheus.sh"
    return {name: str(path) for name, path in tools.items()}


@pytest.fixture
def drifted() -> DriftResult:
    """A hand-made drifted result (one column, coverage 50%) for the metric tests."""
    return DriftResult(
        detected=True,
        reasons=["data drift in 1/1 columns"],
        drift_share=1.0,
        column_scores={"y": 2.0},
        drifted_columns=["y"],
        prediction_drift=None,
        quality={"champion": VariantQuality(n_actuals=48, mae=1.0, coverage=0.5)},
        champion_val_mae=1.0,
        notes=[],
        config=DriftConfig(),
    )
