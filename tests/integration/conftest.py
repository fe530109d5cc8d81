"""Shared fixtures: a small-slice experiment config and a Tidemill home per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.home import TidemillHome
from tidemill.airflow_runs import airflow_env

REPO = Path(__file__).resolve().parents[2]


def m4_slice(ids: list[str], rows: int, path: Path | None = None) -> pd.DataFrame:
    """The last ``rows`` values of the M4 hourly series ``ids`` (written to ``path`` if given)."""
    data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
    data = data[data["unique_id"].isin(ids)].groupby("unique_id", sort=False).tail(rows)
    if path is not None:
        data.to_parquet(path, index=False)
    return data
BIN = Path(sys.executable).parent

SMALL_CONFIG = {
    "name": "etth1-small",
    "data": {
        "source": {"kind": "csv", "path": str(REPO / "data" / "ETTh1.csv")},
        "time_column": "date",
        "target_column": "OT",
        "series_id": "ETTh1",
        "freq": "h",
        "rows": {"start": 0, "stop": 2400},
    },
    "split": {"val_size": 400, "test_size": 300},
    "horizon": 12,
    "algorithms": {
        "seasonal_naive": {"params": {"season": 24}},
        "nlinear": {
            "params": {"lookback": 96},
            "search_space": {"alpha": {"type": "float", "low": 0.1, "high": 100, "log": True}},
        },
        "arima": {"params": {"p": 1, "d": 0, "q": 1, "fit_window": 500}},
        "xgboost": {
            "params": {"lookback": 24, "n_estimators": 30},
            "search_space": {"max_depth": {"type": "int", "low": 2, "high": 4}},
        },
        "lstm": {"params": {"lookback": 24, "units": 8, "epochs": 1, "batch_size": 128}},
    },
    "tuning": {"n_trials": 2, "cv_folds": 2, "seed": 7, "max_origins_per_fold": 40},
    "mlflow": {"experiment": "it-small", "registered_model_name": "it-forecaster"},
}


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL_CONFIG))
    return path


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> TidemillHome:
    """A Tidemill home whose Airflow metadata DB is migrated once per session."""
    home = TidemillHome.resolve(tmp_path_factory.mktemp("home"))
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=airflow_env(home),
        check=True,
        capture_output=True,
    )
    return home


def run_dag(home: TidemillHome, dag_id: str, conf: str) -> subprocess.CompletedProcess[str]:
    """``airflow dags test`` on the home; output captured for assertions."""
    env = airflow_env(home)
    env["PYTHONWARNINGS"] = "ignore"
    return subprocess.run(
        [str(BIN / "airflow"), "dags", "test", dag_id, "-c", conf],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=os.getcwd(),
    )
