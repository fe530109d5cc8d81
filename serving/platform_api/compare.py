"""``POST /api/ml/models/compare``: cross-validated scores of several algorithms on one
dataset version, with the tabular tuner's own folds, fitting and scoring
(``pipelines.tabular.tuning``: ``cv_splits``, ``fit_model``, ``predict_scores``, ``score``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import ConfigError
from pipelines.data.validate import DataValidationError
from pipelines.tabular.config import parse_tabular_config
from pipelines.tabular.data import validate_table
from pipelines.tabular.preprocess import fit_model
from pipelines.tabular.tuning import BOOSTED, cv_splits, predict_scores, score
from serving.platform_api.datasets import DatasetError


def compare(frame: pd.DataFrame, config: dict[str, Any]) -> dict[str, Any]:
    """Mean ± std of the config's metric over its CV folds, per algorithm (fixed params)."""
    try:
        cfg = parse_tabular_config(config, origin="compare request")
    except ConfigError as exc:
        raise DatasetError(str(exc)) from exc
    try:
        validated = validate_table(frame, cfg)
    except DataValidationError as exc:
        raise DatasetError(str(exc)) from exc
    data = validated.frame
    X = data[validated.numeric + validated.categorical]
    y = None
    if cfg.labelled:
        target = data[cfg.data.target_column]
        if cfg.task == "regression":
            y = target.to_numpy(float)
        else:
            classes = sorted(target.unique().tolist())
            y = target.map({c: i for i, c in enumerate(classes)}).to_numpy(int)
    if cfg.task == "anomaly" and y is None:
        raise DatasetError("compare: anomaly detectors are scored against labels; the dataset "
                           "has no target column")  # fmt: skip
    folds = cv_splits(cfg, X, y)
    results = []
    for name, algo in cfg.algorithms.items():
        started = time.perf_counter()
        scores = []
        for fit_rows, held_rows in folds:
            X_held, y_held = X.iloc[held_rows], y[held_rows]
            fitted = fit_model(
                name, dict(algo.params), X.iloc[fit_rows],
                None if cfg.task == "anomaly" else y[fit_rows],
                validated.numeric, validated.categorical, cfg,
                eval_set=(X_held, y_held) if name in BOOSTED else None,
            )  # fmt: skip
            scores.append(score(cfg.task, cfg.metric, y_held,
                                predict_scores(fitted.pipeline, X_held, cfg.task)))  # fmt: skip
        results.append({
            "algorithm": name, "params": dict(algo.params), "mean": float(np.mean(scores)),
            "std": float(np.std(scores)), "folds": [float(s) for s in scores],
            "seconds": round(time.perf_counter() - started, 3),
        })  # fmt: skip
    sign = -1.0 if cfg.direction == "maximize" else 1.0
    results.sort(key=lambda r: sign * r["mean"])
    return {"metric": cfg.metric, "direction": cfg.direction, "cv": cfg.cv.model_dump(),
            "rows": len(X), "results": results}  # fmt: skip
