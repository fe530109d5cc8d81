"""What the Tidemill DAGs share: the model Asset, the default config, the home and the retry
settings.

Lives in the installed `tidemill` package (not the DAGs folder) so every DAG file imports it
the same way under `airflow dags test`, the dag processor and the KubernetesExecutor.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from pipelines.project_dir import PROJECT_DIR

if TYPE_CHECKING:
    from pipelines.home import TidemillHome

REPO = PROJECT_DIR  # configs/ and data/: the checkout, or the image's copy
DEFAULT_CONFIG = os.environ.get("TIDEMILL_CONFIG", str(REPO / "configs" / "etth1.yaml"))
MODEL_ASSET = Asset(name="tidemill_registered_model", uri="tidemill://mlflow/registered-model")
# Tabular registrations (classification, regression, anomaly) get their own Asset: the
# forecasting promotion listens on MODEL_ASSET and cannot evaluate them.
TABULAR_CONFIG = os.environ.get(
    "TIDEMILL_TABULAR_CONFIG", str(REPO / "configs" / "ai4i_classification.yaml")
)
TABULAR_MODEL_ASSET = Asset(
    name="tidemill_registered_tabular_model", uri="tidemill://mlflow/registered-tabular-model"
)


RETRY_DELAY_ENV = "TIDEMILL_TASK_RETRY_DELAY_S"


def retry_args(retries: int, delay_s: float) -> dict[str, Any]:
    """A DAG's ``default_args`` for retries: ``retries`` tries more, ``delay_s`` seconds apart
    unless ``$TIDEMILL_TASK_RETRY_DELAY_S`` sets the delay (the test harnesses that make tasks
    fail on purpose set a short one; read when the DAG file is parsed)."""
    override = os.environ.get(RETRY_DELAY_ENV)
    try:
        seconds = float(override) if override else delay_s
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV}={override!r}: not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"{RETRY_DELAY_ENV}={override!r}: negative")
    return {"retries": retries, "retry_delay": timedelta(seconds=seconds)}


def home() -> TidemillHome:
    """The Tidemill home of this deployment ($TIDEMILL_HOME); imported only inside tasks."""
    from pipelines.home import TidemillHome

    return TidemillHome.resolve()
