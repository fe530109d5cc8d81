"""Stacking ensemble (scikit-learn): ``estimators`` combined by ``final_estimator``
(logistic regression / ridge by default) on out-of-fold predictions."""

from __future__ import annotations

from typing import Any

from pipelines.tabular.algorithms._members import members


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import StackingClassifier, StackingRegressor

    from pipelines.tabular.algorithms.registry import build_estimator

    base = members(task, params, seed)
    final_name = params.pop("final_estimator", None) or (
        "logistic_regression" if task == "classification" else "ridge"
    )
    final = build_estimator(final_name, task, {}, seed)
    cls = StackingClassifier if task == "classification" else StackingRegressor
    return cls(base, final_estimator=final, **{"cv": 3, **params})
