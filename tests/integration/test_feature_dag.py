"""The feature_materialize DAG through Airflow (``airflow dags test``): publishes ETTh1's
covariates and AI4I's machine records to Feast and materialises them; the online store then
serves the newest values stamped up to the run's ``end``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.feature_store import FeatureStoreError, online_features
from tests.integration.conftest import run_dag

REPO = Path(__file__).resolve().parents[2]


def test_materialize_dag_fills_the_online_store(airflow_home, tmp_path: Path) -> None:
    rows = pd.read_csv(REPO / "data" / "ETTh1.csv", nrows=300)
    source = tmp_path / "etth1-300.csv"
    rows.to_csv(source, index=False)
    end = rows["date"].iloc[199]  # the online store holds the value of this hour, not later
    machines = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig", nrows=50)
    ai4i = tmp_path / "ai4i-50.csv"
    machines.to_csv(ai4i, index=False)
    conf = json.dumps({"source": str(source), "ai4i_source": str(ai4i), "end": end})
    proc = run_dag(airflow_home, "feature_materialize", conf)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert "features: materialised ['ai4i_machine', 'etth1_covariates']" in logs
    for line in ("published etth1_covariates (300 rows", "published ai4i_machine (50 rows",
                 "materialised ai4i_machine (1/2) in", "materialised etth1_covariates (2/2) in"):
        assert f"[tidemill] features: {line}" in logs, line  # a line per view
    found = online_features(airflow_home, ["ETTh1"], ["HUFL", "LULL"])
    assert found.loc[0, "HUFL"] == pytest.approx(rows["HUFL"].iloc[199])
    assert found.loc[0, "LULL"] == pytest.approx(rows["LULL"].iloc[199])
    # AI4I's records are stamped in 2020, after this run's end: none of them is online yet
    with pytest.raises(FeatureStoreError, match=r"UDI \[7\]"):
        online_features(airflow_home, [7], ["Torque"], view="ai4i_machine")
