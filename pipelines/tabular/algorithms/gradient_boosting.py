"""Gradient boosting (scikit-learn), classification and regression."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    cls = GradientBoostingClassifier if task == "classification" else GradientBoostingRegressor
    return cls(**{"random_state": seed, **params})
