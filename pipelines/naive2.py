"""Naive2, the M4 Competition's reference forecast, and OWA relative to it.

Naive2 (Makridakis et al., 2020): when the series is seasonal (the M4 autocorrelation test at
the seasonal lag, 90 %), divide it by the seasonal indices of a classical multiplicative
decomposition, repeat the last deseasonalised value, and multiply the indices back in. Series
with a value <= 0 are not decomposed (a multiplicative decomposition needs positive values).

OWA = (sMAPE / sMAPE of Naive2 + MASE / MASE of Naive2) / 2, each averaged over the same series
and windows (the competition's overall weighted average; < 1 beats Naive2).
"""

from __future__ import annotations

import numpy as np


def is_seasonal(y: np.ndarray, season: int) -> bool:
    """M4's test: |ACF(season)| above 1.645 * sqrt((1 + 2 * sum ACF(k)^2, k < season) / n)."""
    y = np.asarray(y, dtype=float)
    if season < 2 or len(y) < 3 * season:
        return False
    dev = y - y.mean()
    denom = float(dev @ dev)
    if denom == 0:
        return False
    acf = np.array([dev[k:] @ dev[:-k] for k in range(1, season + 1)]) / denom
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(acf[:-1] ** 2)) / len(y))
    return bool(abs(acf[-1]) > limit)


def seasonal_indices(y: np.ndarray, season: int) -> np.ndarray:
    """The last ``season`` multiplicative seasonal indices of ``y`` (ones if not seasonal)."""
    y = np.asarray(y, dtype=float)
    if not is_seasonal(y, season) or (y <= 0).any():
        return np.ones(max(season, 1))
    from statsmodels.tsa.seasonal import seasonal_decompose

    return np.asarray(seasonal_decompose(y, model="multiplicative", period=season).seasonal)[
        -season:
    ]


def forecast(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Naive2 forecasts from each origin ``o`` (using ``y[:o]``), shape ``(len, horizon)``.

    The seasonal indices come from the history before the first origin (exact for one origin,
    as in M4; later origins reuse them by phase)."""
    y = np.asarray(y, dtype=float)
    origins = np.asarray(origins, dtype=int)
    first = int(origins.min())
    si = seasonal_indices(y[:first], season)
    period = len(si)

    def index(positions: np.ndarray) -> np.ndarray:
        return si[(positions - (first - period)) % period]

    level = y[origins - 1] / index(origins - 1)
    future = origins[:, None] + np.arange(horizon)[None, :]
    return level[:, None] * index(future)


def owa(smape: float, mase: float, smape_naive2: float, mase_naive2: float) -> float:
    """The overall weighted average relative to Naive2 (NaN when Naive2 is perfect)."""
    if smape_naive2 <= 0 or mase_naive2 <= 0:
        return float("nan")
    return 0.5 * (smape / smape_naive2 + mase / mase_naive2)
