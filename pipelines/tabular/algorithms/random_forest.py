"""Random forest (scikit-learn), classification and regression."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
    return cls(**{"n_estimators": 200, "n_jobs": 1, "random_state": seed, **params})
