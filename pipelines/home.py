"""The Tidemill home: one folder holding every embedded store of a local installation.

``TIDEMILL_HOME`` (or ``--home``) moves it; the default is ``.tidemill`` under the working
directory. Layout: ``mlflow.db`` + ``mlartifacts/`` (MLflow), ``optuna.db`` (studies),
``airflow/`` (Airflow home, SQLite metadata), ``runs/`` (snapshots and stage outputs),
``prediction_log.db`` (serving), ``reports/`` (drift), ``metrics/`` (drift gauges).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "TIDEMILL_HOME"


@dataclass(frozen=True)
class TidemillHome:
    root: Path

    @classmethod
    def resolve(cls, root: str | Path | None = None) -> TidemillHome:
        """The home from an explicit path, else $TIDEMILL_HOME, else ./.tidemill."""
        chosen = root or os.environ.get(HOME_ENV) or ".tidemill"
        home = cls(Path(chosen).expanduser().resolve())
        home.root.mkdir(parents=True, exist_ok=True)
        return home

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def optuna_uri(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def prediction_log_uri(self) -> str:
        return f"sqlite:///{self.root / 'prediction_log.db'}"

    @property
    def metrics_dir(self) -> Path:
        """Prometheus text files written by jobs (drift), re-exported by the control API."""
        return self.root / "metrics"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"
