"""Voting ensemble (scikit-learn): soft voting over ``estimators`` for classification,
averaged predictions for regression."""

from __future__ import annotations

from typing import Any

from pipelines.tabular.algorithms._members import members


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import VotingClassifier, VotingRegressor

    base = members(task, params, seed)
    if task == "classification":
        return VotingClassifier(base, **{"voting": "soft", **params})
    return VotingRegressor(base, **params)
