"""AdaBoost (scikit-learn), classification and regression."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import AdaBoostClassifier, AdaBoostRegressor

    cls = AdaBoostClassifier if task == "classification" else AdaBoostRegressor
    return cls(**{"random_state": seed, **params})
