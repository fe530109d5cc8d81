"""Optuna tuning of tabular models: TPE, random or grid sampling (``tuning.method``), scored by
cross-validation on the training rows (k-fold, stratified or time-series), folds reported to
a median pruner, boosted models stopped early on each fold's held-out rows.

Studies live in an Optuna storage (SQLite in the Tidemill home by default) and resume.
A boosted model's fold score comes from the rows it stopped early on, a small optimistic bias
shared by every trial (the candidate's test rows never see either).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import AlgorithmConfig, ConfigError, SearchParam
from pipelines.tabular import evaluation
from pipelines.tabular.config import TabularConfig
from pipelines.tabular.preprocess import fit_model
from pipelines.tuning import _progress, suggest

log = logging.getLogger(__name__)

BOOSTED = ("lightgbm", "xgboost")


def cv_splits(cfg: TabularConfig, X: pd.DataFrame, y: np.ndarray | None) -> list[tuple]:
    """(fit rows, held-out rows) of each fold; time-series folds follow ``time_column``."""
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    n = cfg.cv.folds
    seed = cfg.tuning.seed
    if cfg.cv.method == "timeseries":
        return list(TimeSeriesSplit(n_splits=n).split(X))
    if cfg.cv.method == "stratified" and y is not None and cfg.task != "regression":
        return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(X, y))
    return list(KFold(n, shuffle=True, random_state=seed).split(X))


def predict_scores(fitted_pipeline: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    """Class probabilities, regression predictions or anomaly scores (higher = anomalous)."""
    if task == "classification":
        return fitted_pipeline.predict_proba(X)
    if task == "regression":
        return fitted_pipeline.predict(X)
    return -fitted_pipeline.score_samples(X)


def score(task: str, metric: str, y: np.ndarray, out: np.ndarray) -> float:
    """One metric of predictions ``out`` (as ``predict_scores`` returns them)."""
    if task == "classification":
        pred = out.argmax(axis=1)
        return evaluation.classification_metrics(y, out, pred)[metric]
    if task == "regression":
        return evaluation.regression_metrics(y, out)[metric]
    flags = (out >= np.quantile(out, 1 - max(np.mean(y), 1e-3))).astype(int)
    return evaluation.anomaly_metrics(y, out, flags)[metric]


def grid_of(space: dict[str, SearchParam]) -> dict[str, list[Any]]:
    """The grid of a search space: choices, integer ranges, float ranges with ``step``."""
    grid: dict[str, list[Any]] = {}
    for name, p in space.items():
        if p.type == "categorical":
            grid[name] = list(p.choices or [])
        elif p.type == "int":
            grid[name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        elif p.step:
            grid[name] = [float(v) for v in np.arange(p.low, p.high + p.step / 2, p.step)]
        else:
            raise ConfigError(
                f"search_space.{name}: grid search needs 'step' for a float parameter"
            )
    return grid


def tune(
    algorithm: str,
    algo_cfg: AlgorithmConfig,
    X: pd.DataFrame,
    y: np.ndarray | None,
    numeric: list[str],
    categorical: list[str],
    cfg: TabularConfig,
    storage: str,
    study_name: str,
    task: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study; without a search space (or labels) the fixed params."""
    task = task or cfg.task
    if not algo_cfg.search_space or y is None:
        log.info("%s: untuned, fixed params %s", algorithm, algo_cfg.params)
        return _result(algorithm, dict(algo_cfg.params), None, 0, None, None)

    import optuna

    metric = cfg.metric if task == cfg.task else "pr_auc"
    direction = "maximize" if task != cfg.task else cfg.direction
    seed = cfg.tuning.seed
    if cfg.tuning.method == "grid":
        sampler: Any = optuna.samplers.GridSampler(grid_of(algo_cfg.search_space), seed=seed)
    elif cfg.tuning.method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction=direction,
        sampler=sampler,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    folds = cv_splits(cfg, X, y)
    fit_y = None if task == "anomaly" else y

    def objective(trial: optuna.Trial) -> float:
        params = {**algo_cfg.params, **suggest(trial, algo_cfg.search_space)}
        scores = []
        for k, (fit_rows, held_rows) in enumerate(folds):
            X_held, y_held = X.iloc[held_rows], y[held_rows]
            fitted = fit_model(
                algorithm,
                params,
                X.iloc[fit_rows],
                None if fit_y is None else fit_y[fit_rows],
                numeric,
                categorical,
                cfg,
                task=task,
                eval_set=(X_held, y_held) if algorithm in BOOSTED else None,
            )
            out = predict_scores(fitted.pipeline, X_held, task)
            scores.append(score(task, metric, y_held, out))
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = max(0, cfg.tuning.n_trials - done)
    if remaining:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=cfg.tuning.timeout_s,
            show_progress_bar=False,
            callbacks=[_progress(algorithm, cfg.tuning.n_trials)],
        )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"{algorithm}: no trial of study {study_name} completed")
    best = study.best_trial
    return _result(
        algorithm,
        {**algo_cfg.params, **best.params},
        float(best.value),
        len(study.trials),
        study_name,
        storage,
    )


def _result(
    algorithm: str,
    params: dict[str, Any],
    value: float | None,
    n_trials: int,
    study_name: str | None,
    storage: str | None,
) -> dict[str, Any]:
    return {
        "algorithm": algorithm,
        "best_params": params,
        "best_value": value,
        "n_trials": n_trials,
        "study_name": study_name,
        "storage": storage,
    }
