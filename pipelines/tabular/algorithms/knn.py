"""k-nearest neighbours (scikit-learn), classification and regression; no sample weights."""

from __future__ import annotations

from typing import Any

SAMPLE_WEIGHT = False


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    cls = KNeighborsClassifier if task == "classification" else KNeighborsRegressor
    return cls(**params)
