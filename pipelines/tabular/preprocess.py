"""Cleaning, encoding, scaling, feature selection and class balancing with scikit-learn.

``fit_model`` returns one fitted ``sklearn.pipeline.Pipeline`` (``preprocess`` then
``model``) that takes the raw feature frame: the preprocessing is saved with the model and
serving applies exactly what training fitted. Row-level cleaning (dropping rows, forward or
backward fill, dropping outlier rows) and resampling touch training rows only; at prediction
time the pipeline's imputers (median / most frequent) stand in for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from pipelines.tabular.algorithms.registry import (
    build_estimator,
    fit_estimator,
    takes_sample_weight,
)
from pipelines.tabular.config import TabularConfig


class OutlierClipper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Clip each column to bounds learnt on training rows: ``q1 - t*IQR .. q3 + t*IQR``
    (``iqr``) or ``mean -+ t*std`` (``zscore``)."""

    def __init__(self, method: str = "iqr", threshold: float = 1.5) -> None:
        self.method = method
        self.threshold = threshold

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        X = np.asarray(X, dtype=float)
        self.n_features_in_ = X.shape[1]
        self.lower_, self.upper_ = outlier_bounds(X, self.method, self.threshold)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "lower_")
        return np.clip(np.asarray(X, dtype=float), self.lower_, self.upper_)


def outlier_bounds(X: np.ndarray, method: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if method == "iqr":
        q1, q3 = np.nanpercentile(X, [25, 75], axis=0)
        return q1 - threshold * (q3 - q1), q3 + threshold * (q3 - q1)
    mean, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    return mean - threshold * std, mean + threshold * std


def abs_correlation(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|Pearson correlation| of each column with the target (a SelectKBest score)."""
    from sklearn.feature_selection import r_regression

    return np.nan_to_num(np.abs(r_regression(X, np.asarray(y, dtype=float))))


def clean_training_rows(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], cfg: TabularConfig
) -> pd.DataFrame:
    """Row-level cleaning of the training rows: drop / ffill / bfill, outlier rows dropped."""
    pre = cfg.preprocess
    frame = frame.copy()
    for cols, how in ((numeric, pre.numeric_imputation), (categorical, pre.categorical_imputation)):
        if not cols:
            continue
        if how == "drop":
            frame = frame.dropna(subset=cols)
        elif how in ("ffill", "bfill"):
            frame[cols] = getattr(frame[cols], how)()
    if pre.outliers.method != "none" and pre.outliers.action == "drop" and numeric:
        values = frame[numeric].to_numpy(float)
        lower, upper = outlier_bounds(values, pre.outliers.method, pre.outliers.threshold)
        inside = ((values >= lower) | np.isnan(values)) & ((values <= upper) | np.isnan(values))
        frame = frame[inside.all(axis=1)]
    return frame


def build_columns(numeric: list[str], categorical: list[str], cfg: TabularConfig) -> Any:
    """The ColumnTransformer: impute, clip outliers, scale numbers; impute and encode labels."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
    )

    pre = cfg.preprocess
    strategy = pre.numeric_imputation if pre.numeric_imputation in ("mean", "median") else "median"
    num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy=strategy))]
    if pre.outliers.method != "none" and pre.outliers.action == "clip":
        num_steps.append(("outliers", OutlierClipper(pre.outliers.method, pre.outliers.threshold)))
    scalers = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
    if pre.scaler in scalers:
        num_steps.append(("scale", scalers[pre.scaler]()))
    encoder = (
        OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        if pre.encoding == "onehot"
        else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    )
    cat_steps = [("impute", SimpleImputer(strategy="most_frequent")), ("encode", encoder)]
    return ColumnTransformer(
        [("num", Pipeline(num_steps), numeric), ("cat", Pipeline(cat_steps), categorical)],
        verbose_feature_names_out=False,
    )


def build_selector(cfg: TabularConfig, n_in: int) -> Any | None:
    """The configured feature selector keeping ``n_features`` of ``n_in`` (None: keep all)."""
    from functools import partial

    from sklearn import feature_selection as fs

    method = cfg.feature_selection.method
    if method == "none":
        return None
    k = min(cfg.feature_selection.n_features or max(1, n_in // 2), n_in)
    classify = cfg.task != "regression"
    seed = cfg.tuning.seed
    if method == "correlation":
        return fs.SelectKBest(abs_correlation, k=k)
    if method == "statistical":
        return fs.SelectKBest(fs.f_classif if classify else fs.f_regression, k=k)
    if method == "mutual_info":
        score = fs.mutual_info_classif if classify else fs.mutual_info_regression
        return fs.SelectKBest(partial(score, random_state=seed), k=k)
    task = "classification" if classify else "regression"
    if method == "rfe":
        base = "logistic_regression" if classify else "ridge"
        return fs.RFE(build_estimator(base, task, {}, seed), n_features_to_select=k)
    forest = build_estimator("random_forest", task, {"n_estimators": 100}, seed)
    return fs.SelectFromModel(forest, max_features=k, threshold=-np.inf)


@dataclass
class Fitted:
    pipeline: Any  # sklearn Pipeline: preprocess -> model
    curves: dict[str, list[float]]  # iteration-wise losses of boosted models
    train_rows: int


def fit_model(
    algorithm: str,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray | None,
    numeric: list[str],
    categorical: list[str],
    cfg: TabularConfig,
    task: str | None = None,
    eval_set: tuple[pd.DataFrame, np.ndarray] | None = None,
) -> Fitted:
    """Clean the training rows, fit preprocessing + selection, balance classes, fit the model.

    ``y``: encoded labels 0..k-1 (classification) or floats; None for unlabelled anomaly.
    ``eval_set``: raw held-out rows for the early stopping of boosted models.
    """
    from sklearn.pipeline import Pipeline

    task = task or cfg.task
    frame = X.assign(__y__=y) if y is not None else X
    frame = clean_training_rows(frame, numeric, categorical, cfg)
    X_clean = frame[numeric + categorical]
    y_clean = frame["__y__"].to_numpy() if y is not None else None
    columns = build_columns(numeric, categorical, cfg)
    Xt = columns.fit_transform(X_clean, y_clean)
    steps: list[tuple[str, Any]] = [("columns", columns)]
    selector = build_selector(cfg, Xt.shape[1]) if y_clean is not None else None
    if selector is not None:
        Xt = selector.fit_transform(Xt, y_clean)
        steps.append(("select", selector))
    preprocess = Pipeline(steps)
    Xt, y_fit, weights = _balance(Xt, y_clean, cfg, algorithm, task)
    estimator = build_estimator(algorithm, task, params, cfg.tuning.seed)
    held_out = None
    if eval_set is not None:
        held_out = (preprocess.transform(eval_set[0]), eval_set[1])
    curves = fit_estimator(
        algorithm, estimator, Xt, y_fit, weights, held_out, cfg.tuning.early_stopping_rounds
    )
    return Fitted(Pipeline([("preprocess", preprocess), ("model", estimator)]), curves, len(Xt))


def _balance(
    Xt: np.ndarray, y: np.ndarray | None, cfg: TabularConfig, algorithm: str, task: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Class weights (balanced sample weights) or imbalanced-learn resampling of train rows."""
    method = cfg.imbalance.method
    if task != "classification" or method == "none" or y is None:
        return Xt, y, None
    if method == "class_weight":
        from sklearn.utils.class_weight import compute_sample_weight

        if not takes_sample_weight(algorithm):
            print(f"[tidemill] {algorithm} takes no sample weights: classes left unweighted")
            return Xt, y, None
        return Xt, y, compute_sample_weight("balanced", y)
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    samplers = {"oversample": RandomOverSampler, "undersample": RandomUnderSampler, "smote": SMOTE}
    X_res, y_res = samplers[method](random_state=cfg.tuning.seed).fit_resample(Xt, y)
    return X_res, y_res, None


def feature_names(pipeline: Any) -> list[str]:
    """Names of the columns the model sees (after encoding and selection)."""
    return [str(n) for n in pipeline.named_steps["preprocess"].get_feature_names_out()]
