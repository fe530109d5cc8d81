"""Where every piece of shared state lives: one resolver for the URLs all components use.

Tasks, serving, drift and promotion share nothing but these URLs, so each may run in its own
process, container or pod with its own filesystem. Each setting comes from the experiment
config where it has a field, else the environment, else the local default in the Tidemill home
(one folder, no server needed)::

    setting          config field / environment         local default
    artifact store   TIDEMILL_ARTIFACT_STORE_URL        the home itself (runs/, reports/)
    MLflow tracking  mlflow.tracking_uri / MLFLOW_TRACKING_URI   sqlite <home>/mlflow.db
    Optuna storage   tuning.storage / TIDEMILL_OPTUNA_STORAGE_URL  sqlite <home>/optuna.db
    prediction log   TIDEMILL_PREDICTION_LOG_URL        sqlite <home>/prediction_log.db
    split state      TIDEMILL_SPLIT_STATE_URL           <home>/serving/splits (a folder)

The artifact store is any fsspec URL (``s3://bucket/prefix`` on Kubernetes); the prediction
log, Optuna and MLflow take SQLAlchemy URLs (PostgreSQL on Kubernetes) or, for MLflow, the
tracking server's ``http://`` URL. S3 credentials and endpoint come from the standard AWS
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``), read by
s3fs/botocore.

The split state is one file per registered model, ``<folder>/<model>.json`` (``split_file``):
several registered models served from one home each keep their own champion/challenger split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from pipelines.home import TidemillHome

if TYPE_CHECKING:
    from pipelines.artifact_store import ArtifactStore
    from pipelines.config import ExperimentConfig

ARTIFACT_STORE_ENV = "TIDEMILL_ARTIFACT_STORE_URL"
MLFLOW_ENV = "MLFLOW_TRACKING_URI"
OPTUNA_ENV = "TIDEMILL_OPTUNA_STORAGE_URL"
PREDICTION_LOG_ENV = "TIDEMILL_PREDICTION_LOG_URL"
SPLIT_STATE_ENV = "TIDEMILL_SPLIT_STATE_URL"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass(frozen=True)
class Settings:
    """The resolved URLs of one component (see the module docstring for the order)."""

    home: TidemillHome
    artifact_store_url: str
    mlflow_tracking_uri: str
    optuna_storage_url: str
    prediction_log_url: str
    split_state_url: str  # the folder of the per-model split files

    @classmethod
    def resolve(
        cls, home: TidemillHome | str | Path | None = None, cfg: ExperimentConfig | None = None
    ) -> Settings:
        if not isinstance(home, TidemillHome):
            home = TidemillHome.resolve(home)
        mlflow_cfg = cfg.mlflow.tracking_uri if cfg is not None else None
        optuna_cfg = cfg.tuning.storage if cfg is not None else None
        return cls(
            home=home,
            artifact_store_url=_env(ARTIFACT_STORE_ENV) or str(home.root),
            mlflow_tracking_uri=mlflow_cfg or _env(MLFLOW_ENV) or home.mlflow_uri,
            optuna_storage_url=optuna_cfg or _env(OPTUNA_ENV) or home.optuna_uri,
            prediction_log_url=_env(PREDICTION_LOG_ENV) or home.prediction_log_uri,
            split_state_url=_env(SPLIT_STATE_ENV) or str(home.root / "serving" / "splits"),
        )

    def split_file(self, model_name: str) -> str:
        """The split state file of one registered model: ``<split folder>/<model>.json`` (the
        name percent-encoded where a file name could not hold it)."""
        if not model_name:
            raise ValueError("a split file needs a registered model name")
        key = quote(model_name, safe="")
        key = f"%2E{key[1:]}" if key.startswith(".") else key  # never a hidden or ../ name
        return f"{self.split_state_url.rstrip('/')}/{key}.json"

    @property
    def store(self) -> ArtifactStore:
        from pipelines.artifact_store import ArtifactStore

        return ArtifactStore(self.artifact_store_url)

    @property
    def job_metrics_url(self) -> str:
        """``<store>/metrics``: Prometheus text files jobs write (drift gauges) and the control
        API re-exports on its ``/metrics`` (``<home>/metrics`` by default)."""
        return self.store.url("metrics")

    @property
    def mlflow_is_local(self) -> bool:
        """True when MLflow is the home's own SQLite store (artifacts then go to the home)."""
        return self.mlflow_tracking_uri == self.home.mlflow_uri
