"""WAPE@1 floor on the ETTh1 protocol (issue 2): how low can a one-hour-ahead forecast of OT go?

Protocol of ``bench/etth1_protocol.py``: target OT; rows [0, 8640) train, [8640, 11520)
validation, [11520, 14400) test; WAPE in original units of the one-step forecast of every test
row (2880 stride-1 windows, origins 11520 .. 14399). Every model but the in-sample oracle is
fitted on training targets only; lookback and ridge alpha (XGBoost: the number of trees, by
early stopping) are chosen on the validation targets. The regression models predict the
one-hour change of OT from, per column, the last value and the lags relative to it (the
NLinear normalisation), all standardised with the training rows' mean and std.

    .venv/orchestrator/bin/python bench/wape_floor.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from etth1_protocol import TEST_END, TRAIN_END, VAL_END, load_series, wape1_oracle

from pipelines.evaluation import wape

DATA = Path(__file__).resolve().parents[1] / "data" / "ETTh1.csv"
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
COLUMNS = [*LOADS, "OT"]
LOOKBACKS = (24, 96, 336)
ALPHAS = 10.0 ** np.arange(-1.0, 6.5, 0.5)
XGB_LOOKBACK = 24
FIRST = max(LOOKBACKS)  # first training target: every lookback sees the same targets
TRAIN, VAL, TEST = (
    np.arange(FIRST, TRAIN_END),
    np.arange(TRAIN_END, VAL_END),
    np.arange(VAL_END, TEST_END),
)


@dataclass
class Result:
    """Test WAPE@1 of one model, with its validation score and the settings chosen there."""

    label: str
    test: float
    val: float | None
    chosen: str


def load_scaled() -> tuple[np.ndarray, np.ndarray, float]:
    """Rows [0, 14400) of the 7 columns standardised on train, the raw OT, and OT's std."""
    raw = pd.read_csv(DATA, usecols=COLUMNS).iloc[:TEST_END][COLUMNS].to_numpy(float)
    mean, std = raw[:TRAIN_END].mean(axis=0), raw[:TRAIN_END].std(axis=0)
    return (raw - mean) / std, raw[:, -1], float(std[-1])


def lag_features(z: np.ndarray, targets: np.ndarray, lookback: int) -> np.ndarray:
    """Per column of ``z``: the value before each target and the ``lookback - 1`` earlier
    values minus it."""
    window = z[targets[:, None] - np.arange(1, lookback + 1)[None, :]]  # (n, lookback, cols)
    last = window[:, :1, :]
    return np.concatenate([last[:, 0, :], (window[:, 1:, :] - last).reshape(len(targets), -1)], 1)


def future_load_change(z: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Oracle covariates: the target hour's actual change of each load column."""
    return z[targets, :-1] - z[targets - 1, :-1]


class Scorer:
    """WAPE (%) of one-step forecasts given as predicted scaled changes of OT."""

    def __init__(self, z: np.ndarray, ot: np.ndarray, ot_std: float) -> None:
        self.z, self.ot, self.ot_std = z, ot, ot_std

    def change(self, targets: np.ndarray) -> np.ndarray:
        """The actual scaled change of OT into each target hour."""
        return self.z[targets, -1] - self.z[targets - 1, -1]

    def __call__(self, targets: np.ndarray, change: np.ndarray) -> float:
        forecast = self.ot[targets - 1] + change * self.ot_std
        return float(wape(self.ot[targets], forecast))


def ridge(
    label: str,
    features: Callable[[np.ndarray, int], np.ndarray],
    score: Scorer,
) -> Result:
    """Ridge on ``features(targets, lookback)``, each feature standardised on train (one
    penalty for all); lookback and alpha by validation WAPE@1."""
    best: tuple[float, int, float, np.ndarray, float] | None = None
    y = score.change(TRAIN)
    for lookback in LOOKBACKS:
        x = features(TRAIN, lookback)
        x_mean, x_std = x.mean(axis=0), x.std(axis=0)
        xs = (x - x_mean) / x_std
        eigval, eigvec = np.linalg.eigh(xs.T @ xs)
        rotated = eigvec.T @ (xs.T @ (y - y.mean()))
        x_val = features(VAL, lookback)
        for alpha in ALPHAS:
            coef = eigvec @ (rotated / (eigval + alpha)) / x_std  # in the features' own units
            intercept = y.mean() - x_mean @ coef
            val = score(VAL, x_val @ coef + intercept)
            if best is None or val < best[0]:
                best = (val, lookback, alpha, coef, intercept)
    assert best is not None
    val, lookback, alpha, coef, intercept = best
    test = score(TEST, features(TEST, lookback) @ coef + intercept)
    return Result(label, test, val, f"lookback {lookback}, alpha {alpha:g}")


def xgboost_multivariate(score: Scorer, seed: int) -> Result:
    """XGBoost on the multivariate lags; the number of trees by early stopping on validation."""
    data = {
        part: xgb.DMatrix(lag_features(score.z, t, XGB_LOOKBACK), label=score.change(t))
        for part, t in (("train", TRAIN), ("val", VAL), ("test", TEST))
    }
    params = {
        "objective": "reg:squarederror",
        "eta": 0.05,
        "max_depth": 4,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5,
        "nthread": min(os.cpu_count() or 1, 4),
        "seed": seed,
    }
    booster = xgb.train(
        params,
        data["train"],
        num_boost_round=2000,
        evals=[(data["val"], "val")],
        early_stopping_rounds=50,
        verbose_eval=False,
    )
    rounds = (0, booster.best_iteration + 1)
    val = score(VAL, booster.predict(data["val"], iteration_range=rounds))
    test = score(TEST, booster.predict(data["test"], iteration_range=rounds))
    return Result(
        "XGBoost, lags of all 7 columns",
        test,
        val,
        f"lookback {XGB_LOOKBACK}, {rounds[1]} trees (eta 0.05, depth 4)",
    )


def main() -> None:
    started = time.perf_counter()
    z, ot, ot_std = load_scaled()
    score = Scorer(z, ot, ot_std)
    results = [
        Result(
            "repeat-last", score(TEST, np.zeros(len(TEST))), score(VAL, np.zeros(len(VAL))), "-"
        ),
        ridge("ridge, OT lags (univariate)", lambda t, k: lag_features(z[:, -1:], t, k), score),
        ridge("ridge, lags of all 7 columns (MS)", lambda t, k: lag_features(z, t, k), score),
        ridge(
            "ridge, lags of all 7 columns + the target hour's actual loads (oracle)",
            lambda t, k: np.hstack([lag_features(z, t, k), future_load_change(z, t)]),
            score,
        ),
        xgboost_multivariate(score, seed=0),
        Result(
            "in-sample AR(336) oracle (least squares on the test windows)",
            wape1_oracle(load_series(), 1),
            None,
            "fitted on the test targets",
        ),
    ]
    print(f"WAPE@1 on the {len(TEST)} test rows [{VAL_END}, {TEST_END}) of ETTh1 OT")
    print()
    print("| model | WAPE@1 test % | WAPE@1 validation % | chosen on validation |")
    print("|---|---:|---:|---|")
    for r in results:
        val = "-" if r.val is None else f"{r.val:.2f}"
        print(f"| {r.label} | {r.test:.2f} | {val} | {r.chosen} |")
    print()
    for part, targets in (("train", TRAIN), ("validation", VAL), ("test", TEST)):
        corr = [
            np.corrcoef(score.change(targets), c)[0, 1] for c in future_load_change(z, targets).T
        ]
        print(
            f"{part}: mean |OT| {np.abs(ot[targets]).mean():.2f}, repeat-last MAE "
            f"{np.abs(np.diff(ot)[targets - 1]).mean():.2f}, largest |correlation| of the "
            f"hourly OT change with the same hour's load changes {np.abs(corr).max():.3f}"
        )
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
