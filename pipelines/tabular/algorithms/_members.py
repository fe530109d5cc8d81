"""Base estimators of the ensembles, each built through the algorithm registry."""

from __future__ import annotations

from typing import Any

DEFAULT_MEMBERS = {
    "classification": ["lightgbm", "random_forest", "logistic_regression"],
    "regression": ["lightgbm", "random_forest", "ridge"],
}


def members(task: str, params: dict[str, Any], seed: int) -> list[tuple[str, Any]]:
    """``params["estimators"]`` (names; default per task) with ``params["member_params"]``."""
    from pipelines.tabular.algorithms.registry import build_estimator

    names = params.pop("estimators", None) or DEFAULT_MEMBERS[task]
    member_params = params.pop("member_params", {}) or {}
    return [(n, build_estimator(n, task, member_params.get(n, {}), seed)) for n in names]
