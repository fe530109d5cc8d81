"""Tabular algorithms: one module each, named here with the tasks it serves; imported lazily.

Every module has ``build(task, params, seed) -> estimator`` (an unfitted scikit-learn
estimator); boosted ones also have ``fit_early_stopping`` (patience on held-out rows,
returning the iteration-wise loss curves), and ``SAMPLE_WEIGHT = False`` marks an estimator
that cannot take class weights.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pipelines.config import ConfigError

C, R, A = "classification", "regression", "anomaly"

ALGORITHMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lightgbm": ("lightgbm_model", (C, R)),
    "xgboost": ("xgboost_model", (C, R)),
    "random_forest": ("random_forest", (C, R)),
    "logistic_regression": ("logistic_regression", (C,)),
    "svm": ("svm", (C,)),
    "decision_tree": ("decision_tree", (C, R)),
    "knn": ("knn", (C, R)),
    "naive_bayes": ("naive_bayes", (C,)),
    "gradient_boosting": ("gradient_boosting", (C, R)),
    "adaboost": ("adaboost", (C, R)),
    "ridge": ("ridge", (R,)),
    "lasso": ("lasso", (R,)),
    "elastic_net": ("elastic_net", (R,)),
    "svr": ("svr", (R,)),
    "isolation_forest": ("isolation_forest", (A,)),
    "voting": ("voting", (C, R)),
    "stacking": ("stacking", (C, R)),
    "bagging": ("bagging", (C, R)),
}


def check_algorithm(name: str, task: str) -> None:
    """Raise ConfigError naming the algorithm when it is unknown or not for ``task``."""
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithms: unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    if task not in ALGORITHMS[name][1]:
        fitting = sorted(a for a, (_, tasks) in ALGORITHMS.items() if task in tasks)
        raise ConfigError(f"algorithms: {name!r} does not do {task}; for {task}: {fitting}")


def module(name: str) -> ModuleType:
    return importlib.import_module(f"pipelines.tabular.algorithms.{ALGORITHMS[name][0]}")


def build_estimator(name: str, task: str, params: dict[str, Any], seed: int) -> Any:
    """An unfitted estimator of algorithm ``name`` for ``task``."""
    check_algorithm(name, task)
    return module(name).build(task, dict(params), seed)


def takes_sample_weight(name: str) -> bool:
    return getattr(module(name), "SAMPLE_WEIGHT", True)


def fit_estimator(
    name: str,
    estimator: Any,
    X: Any,
    y: Any,
    sample_weight: Any = None,
    eval_set: tuple[Any, Any] | None = None,
    patience: int = 30,
) -> dict[str, list[float]]:
    """Fit in place; boosted models stop early on ``eval_set``. Returns loss curves (or {})."""
    mod = module(name)
    if eval_set is not None and hasattr(mod, "fit_early_stopping"):
        return mod.fit_early_stopping(estimator, X, y, sample_weight, eval_set, patience)
    if sample_weight is not None and getattr(mod, "SAMPLE_WEIGHT", True):
        estimator.fit(X, y, sample_weight=sample_weight)
    else:
        estimator.fit(X, y)
    return {}
