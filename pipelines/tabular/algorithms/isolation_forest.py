"""Isolation Forest (scikit-learn): unsupervised anomaly scores (higher = more anomalous)."""

from __future__ import annotations

from typing import Any

SAMPLE_WEIGHT = False


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(**{"n_estimators": 200, "n_jobs": 1, "random_state": seed, **params})
