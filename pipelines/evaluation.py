"""Forecast metrics (overall and per horizon step) and the plots people look at.

All metric functions take arrays of the same shape ``(n_windows, horizon)`` (or 1-D) and
return floats; ``per_step`` variants reduce over windows only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


def mae(actual: np.ndarray, pred: np.ndarray, axis: int | None = None) -> np.ndarray:
    return np.mean(np.abs(actual - pred), axis=axis)


def mse(actual: np.ndarray, pred: np.ndarray, axis: int | None = None) -> np.ndarray:
    return np.mean((actual - pred) ** 2, axis=axis)


def rmse(actual: np.ndarray, pred: np.ndarray, axis: int | None = None) -> np.ndarray:
    return np.sqrt(mse(actual, pred, axis))


def mape(actual: np.ndarray, pred: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, int]:
    """Mean absolute percentage error in percent, skipping zero actuals.

    Returns ``(value, skipped)``: how many zero actuals were left out, so a report can say so.
    """
    nonzero = actual != 0
    ratio = np.where(nonzero, np.abs((actual - pred) / np.where(nonzero, actual, 1.0)), 0.0)
    count = nonzero.sum(axis=axis)
    value = 100.0 * ratio.sum(axis=axis) / np.maximum(count, 1)
    value = np.where(count > 0, value, np.nan)
    return value, int(np.size(actual) - np.sum(nonzero))


def smape(actual: np.ndarray, pred: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Symmetric MAPE in percent (0..200); pairs where both are zero count as 0."""
    denom = np.abs(actual) + np.abs(pred)
    ratio = np.where(denom > 0, 2.0 * np.abs(actual - pred) / np.where(denom > 0, denom, 1), 0.0)
    return 100.0 * np.mean(ratio, axis=axis)


def wape(actual: np.ndarray, pred: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Weighted absolute percentage error in percent: sum|e| / sum|actual|."""
    return 100.0 * np.sum(np.abs(actual - pred), axis=axis) / np.sum(np.abs(actual), axis=axis)


def mase_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast on the training series (MASE denominator)."""
    train = np.asarray(train, dtype=float)
    if len(train) <= season:
        raise ValueError(f"MASE needs more than {season} training values, got {len(train)}")
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    if scale == 0:
        raise ValueError("MASE is undefined: the training series is constant at the season lag")
    return scale


def coverage(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, axis: int | None = None
) -> np.ndarray:
    """Share of actuals inside [lower, upper]."""
    return np.mean((actual >= lower) & (actual <= upper), axis=axis)


@dataclass
class Evaluation:
    """Overall metrics plus per-step curves (index 0 is one step ahead)."""

    overall: dict[str, float]
    per_step: dict[str, list[float]] = field(default_factory=dict)
    mape_zero_actuals_skipped: int = 0


def evaluate(
    actual: np.ndarray,
    pred: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    mase_denominator: float | np.ndarray,
) -> Evaluation:
    """Every metric, overall and per horizon step, on arrays of shape ``(n_windows, horizon)``.

    ``mase_denominator`` is one number, or one per window (shape ``(n_windows, 1)``) when the
    windows come from several series: MASE is then the mean of each window's scaled error.
    """
    actual, pred = np.atleast_2d(actual), np.atleast_2d(pred)
    if actual.shape != pred.shape:
        raise ValueError(f"actual {actual.shape} and forecast {pred.shape} differ in shape")
    scaled_error = np.abs(actual - pred) / mase_denominator
    mape_all, skipped = mape(actual, pred)
    overall = {
        "mae": float(mae(actual, pred)),
        "mse": float(mse(actual, pred)),
        "rmse": float(rmse(actual, pred)),
        "mape": float(mape_all),
        "smape": float(smape(actual, pred)),
        "wape": float(wape(actual, pred)),
        "mase": float(np.mean(scaled_error)),
    }
    per_step = {
        "mae": mae(actual, pred, axis=0).tolist(),
        "rmse": rmse(actual, pred, axis=0).tolist(),
        "smape": smape(actual, pred, axis=0).tolist(),
        "wape": wape(actual, pred, axis=0).tolist(),
        "mase": np.mean(scaled_error, axis=0).tolist(),
        "mape": mape(actual, pred, axis=0)[0].tolist(),
    }
    if lower is not None and upper is not None:
        overall["coverage"] = float(coverage(actual, lower, upper))
        per_step["coverage"] = coverage(actual, lower, upper, axis=0).tolist()
    return Evaluation(overall, per_step, skipped)


def series_table(
    ids: list[str],
    actual: list[np.ndarray],
    pred: list[np.ndarray],
    lower: list[np.ndarray],
    upper: list[np.ndarray],
    mase_denominators: list[float],
) -> pd.DataFrame:
    """Overall metrics of each series, one row per series id."""
    rows = []
    for uid, a, p, lo, up, den in zip(
        ids, actual, pred, lower, upper, mase_denominators, strict=True
    ):
        overall = evaluate(a, p, lo, up, den).overall
        rows.append({"unique_id": uid, **overall})
    return pd.DataFrame(rows)


def actual_windows(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The actual values following each origin, shape ``(len(origins), horizon)``."""
    return sliding_window_view(np.asarray(y, dtype=float), horizon)[np.asarray(origins, int)]


def plot_forecast(
    ds: np.ndarray,
    y: np.ndarray,
    origin: int,
    pred: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    title: str,
    path: Path,
    context: int = 168,
) -> Path:
    """PNG of one forecast from ``origin`` against the actuals, with its interval band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = len(pred)
    start = max(0, origin - context)
    stop = min(len(y), origin + horizon)
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(ds[start:stop], y[start:stop], color="black", lw=1, label="actual")
    future = ds[origin : origin + horizon]
    ax.plot(future, pred[: len(future)], color="tab:blue", lw=1.5, label="forecast")
    ax.fill_between(
        future,
        lower[: len(future)],
        upper[: len(future)],
        color="tab:blue",
        alpha=0.2,
        label="interval",
    )
    ax.axvline(ds[origin], color="grey", ls="--", lw=0.8)
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_step(per_step: dict[str, list[float]], title: str, path: Path) -> Path:
    """PNG of MAE and interval coverage by horizon step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(per_step["mae"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    axes[0].plot(steps, per_step["mae"])
    axes[0].set(xlabel="horizon step", ylabel="MAE", title="error by step")
    if "coverage" in per_step:
        axes[1].plot(steps, per_step["coverage"])
        axes[1].set(xlabel="horizon step", ylabel="coverage", title="interval coverage by step")
        axes[1].set_ylim(0, 1.05)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_distribution(
    table: pd.DataFrame, metrics: list[str], title: str, path: Path
) -> Path:
    """PNG histograms of per-series metrics (one panel per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = table[metric].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        ax.hist(values, bins=min(30, max(5, len(values) // 2)), color="tab:blue", alpha=0.8)
        ax.axvline(np.median(values), color="black", ls="--", lw=1, label="median")
        ax.set(xlabel=metric, ylabel="series", title=f"{metric} per series")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
