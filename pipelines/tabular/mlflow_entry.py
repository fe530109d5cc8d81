"""MLflow models-from-code entry of tabular models (``TidemillTabularModel``)."""

import mlflow.models

from pipelines.tabular.pyfunc_model import TidemillTabularModel

mlflow.models.set_model(TidemillTabularModel())
