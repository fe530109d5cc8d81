"""LightGBM gradient-boosted trees, classification and regression, with early stopping."""

from __future__ import annotations

from typing import Any


def build(task: str, params: dict[str, Any], seed: int) -> Any:
    import lightgbm as lgb

    cls = lgb.LGBMClassifier if task == "classification" else lgb.LGBMRegressor
    return cls(**{"n_estimators": 500, "n_jobs": 1, "random_state": seed, "verbose": -1, **params})


def fit_early_stopping(
    estimator: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    eval_set: tuple[Any, Any],
    patience: int,
) -> dict[str, list[float]]:
    """Stop after ``patience`` rounds without improvement on ``eval_set``; the loss curves."""
    import lightgbm as lgb

    curves: dict[str, Any] = {}
    estimator.fit(
        X,
        y,
        sample_weight=sample_weight,
        eval_X=(X, eval_set[0]),
        eval_y=(y, eval_set[1]),
        eval_names=["train", "valid"],
        callbacks=[lgb.early_stopping(patience, verbose=False), lgb.record_evaluation(curves)],
    )
    return {f"{part}_{name}": list(v) for part, d in curves.items() for name, v in d.items()}
