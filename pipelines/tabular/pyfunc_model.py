"""The MLflow pyfunc flavour of a tabular bundle.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(features)`` takes one row per
record with the training feature columns and returns ``prediction`` (and, for classifiers,
``prediction_proba`` and ``proba_<class>``; for anomaly detectors ``score``).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import mlflow.pyfunc
import pandas as pd

from pipelines.pyfunc_model import _COMMON_REQUIREMENTS
from pipelines.tabular.bundle import TabularBundle

_ALGORITHM_REQUIREMENTS = {"lightgbm": ["lightgbm"], "xgboost": ["xgboost-cpu"]}
_ENSEMBLES = ("voting", "stacking")


def pip_requirements(algorithm: str) -> list[str]:
    """Pinned requirements (the lock versions): scikit-learn, joblib and the booster used."""
    names = [*_COMMON_REQUIREMENTS, "scikit-learn", "joblib"]
    extra = ["lightgbm"] if algorithm in _ENSEMBLES else []
    names += _ALGORITHM_REQUIREMENTS.get(algorithm, extra)
    return [f"{n}=={version(n)}" for n in names]


class TidemillTabularModel(mlflow.pyfunc.PythonModel):
    """Predict from feature records with the bundle logged under artifact key ``bundle``."""

    def load_context(self, context: Any) -> None:
        self.bundle = TabularBundle.load(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.bundle.predict(model_input)
