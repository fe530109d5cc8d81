"""Model registry: algorithm name -> forecaster class, imported lazily.

Adding a model is one module plus one line here. Imports are lazy so that parsing a DAG or
serving an XGBoost model never imports TensorFlow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.models.base import Forecaster

MODELS: dict[str, str] = {
    "seasonal_naive": "pipelines.models.seasonal_naive:SeasonalNaive",
    "nlinear": "pipelines.models.nlinear:NLinearRidge",
    "arima": "pipelines.models.arima:Arima",
    "xgboost": "pipelines.models.xgboost_model:XGBoostForecaster",
    "lightgbm": "pipelines.models.lightgbm_model:LightGBMForecaster",
    "lstm": "pipelines.models.lstm:LSTMForecaster",
    "ets": "pipelines.models.ets:ETS",
    "theta": "pipelines.models.theta:Theta",
    "mstl": "pipelines.models.mstl:MSTLForecaster",
    "mlp": "pipelines.models.mlp:MLPForecaster",
}


def get_model_class(name: str) -> type[Forecaster]:
    """Return the forecaster class registered under ``name``."""
    try:
        target = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(MODELS)}") from None
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


def build_model(name: str, horizon: int, **kwargs: object) -> Forecaster:
    """Instantiate the forecaster ``name`` with a horizon and its hyper-parameters."""
    return get_model_class(name)(horizon=horizon, **kwargs)
