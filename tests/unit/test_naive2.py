"""Naive2 and OWA against the M4 Competition's published hourly figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import naive2
from pipelines.evaluation import mae, mase_scale, smape

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"


def test_naive2_reproduces_the_published_m4_hourly_benchmark() -> None:
    """Naive2 on all 414 hourly series: sMAPE 18.383, MASE 2.395 in M4's results."""
    smapes, mases = [], []
    for _, group in pd.read_parquet(M4).groupby("unique_id", sort=False):
        y = group["y"].to_numpy()
        n = len(y) - 48
        forecast = naive2.forecast(y, np.array([n]), 48, 24)[0]
        smapes.append(smape(y[n:], forecast))
        mases.append(mae(y[n:], forecast) / mase_scale(y[:n], 24))
    assert np.mean(smapes) == pytest.approx(18.383, abs=5e-4)
    assert np.mean(mases) == pytest.approx(2.395, abs=5e-4)


def test_non_seasonal_or_non_positive_series_is_plain_naive() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(200).cumsum()
    assert not naive2.is_seasonal(noise, 24)
    np.testing.assert_allclose(naive2.forecast(noise, np.array([150]), 5, 24), noise[149])
    seasonal = np.sin(2 * np.pi * np.arange(240) / 24)  # has values <= 0
    assert naive2.is_seasonal(seasonal, 24)
    np.testing.assert_allclose(naive2.seasonal_indices(seasonal, 24), np.ones(24))


def test_owa_is_the_mean_of_the_two_ratios() -> None:
    assert naive2.owa(9.0, 1.0, 18.0, 2.0) == pytest.approx(0.5)
    assert np.isnan(naive2.owa(1.0, 1.0, 0.0, 1.0))
