"""XGBoost gradient-boosted trees, classification and regression, with early stopping.

Classes must be 0..k-1 (the tabular pipeline encodes labels before fitting)."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    import xgboost as xgb

    cls = xgb.XGBClassifier if task == "classification" else xgb.XGBRegressor
    return cls(**{"n_estimators": 500, "n_jobs": 1, "random_state": seed, **params})


def fit_early_stopping(
    estimator: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    eval_set: tuple[Any, Any],
    patience: int,
) -> dict[str, list[float]]:
    """Stop after ``patience`` rounds without improvement on ``eval_set``; the loss curves."""
    estimator.set_params(early_stopping_rounds=patience)
    estimator.fit(X, y, sample_weight=sample_weight, eval_set=[(X, y), eval_set], verbose=False)
    curves = estimator.evals_result()
    names = {"validation_0": "train", "validation_1": "valid"}
    return {f"{names[p]}_{m}": list(v) for p, d in curves.items() for m, v in d.items()}
