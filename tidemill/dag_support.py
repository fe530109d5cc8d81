"""What the Tidemill DAGs share: the model Asset, the default config and the home.

Lives in the installed `tidemill` package (not the DAGs folder) so every DAG file imports it
the same way under `airflow dags test`, the dag processor and the KubernetesExecutor.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

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


def home() -> TidemillHome:
    """The Tidemill home of this deployment ($TIDEMILL_HOME); imported only inside tasks."""
    from pipelines.home import TidemillHome

    return TidemillHome.resolve()
