"""Bagging ensemble (scikit-learn) of one base ``estimator`` (a decision tree by default)."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import BaggingClassifier, BaggingRegressor

    from pipelines.tabular.algorithms.registry import build_estimator

    base = build_estimator(params.pop("estimator", "decision_tree"), task, {}, seed)
    cls = BaggingClassifier if task == "classification" else BaggingRegressor
    return cls(base, **{"n_estimators": 20, "random_state": seed, **params})
