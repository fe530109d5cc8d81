"""MSTL (daily + weekly decomposition, ETS on the rest) per series on real M4 hourly series:
forecasts, conformal intervals, persistence, the bundle path serving uses, and bad params."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.bundle import ForecastBundle
from pipelines.config import PreprocessConfig
from pipelines.evaluation import mase_scale
from pipelines.models.base import Forecaster
from pipelines.models.per_series import PerSeries
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
IDS = ["H1", "H150", "H300"]
HORIZON, ROWS, VAL = 48, 600, 96
PARAMS = {"seasons": [24, 168], "lookback": 400}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The last ROWS values of three M4 hourly series (long table)."""
    data = pd.read_parquet(M4)
    data = data[data["unique_id"].isin(IDS)].groupby("unique_id", sort=False).tail(ROWS)
    return data.reset_index(drop=True)


@pytest.fixture(scope="module")
def preprocessor(frame: pd.DataFrame) -> Preprocessor:
    """Log target then per-series standardisation, fitted on the training part."""
    train = frame.groupby("unique_id", sort=False).head(ROWS - VAL - HORIZON)
    return Preprocessor(PreprocessConfig(target_transform="log")).fit(train)


@pytest.fixture(scope="module")
def panel(frame: pd.DataFrame, preprocessor: Preprocessor) -> dict[str, np.ndarray]:
    return {
        uid: preprocessor.transform_target(g["y"].to_numpy(float), [uid] * len(g))
        for uid, g in frame.groupby("unique_id", sort=False)
    }


@pytest.fixture(scope="module")
def fitted(panel: dict[str, np.ndarray]) -> PerSeries:
    """One MSTL per series, fitted on train, intervals calibrated on validation origins."""
    train_end = ROWS - VAL - HORIZON
    model = PerSeries(HORIZON, algorithm="mstl", level=0.9, **PARAMS)
    model.fit([y[:train_end] for y in panel.values()], ids=IDS)
    origins = np.arange(train_end, ROWS - 2 * HORIZON + 1, 8)
    for uid, y in panel.items():
        model.model(uid).calibrate(y[: ROWS - HORIZON], origins)
    return model


def test_forecasts_beat_seasonal_naive_with_intervals(fitted: PerSeries, panel) -> None:
    windows = np.stack([y[:-HORIZON] for y in panel.values()])
    actual = np.stack([y[-HORIZON:] for y in panel.values()])
    point, lower, upper = fitted.predict_intervals(windows, ids=IDS)
    assert point.shape == lower.shape == upper.shape == (len(IDS), HORIZON)
    assert np.isfinite(point).all() and (lower < point).all() and (point < upper).all()
    scales = np.array([[mase_scale(y[:-HORIZON], 24)] for y in panel.values()])
    mase = np.mean(np.abs(actual - point) / scales)
    naive = np.tile(windows[:, -24:], 2)
    naive_mase = np.mean(np.abs(actual - naive) / scales)
    assert mase < naive_mase, (mase, naive_mase)
    assert np.mean((lower <= actual) & (actual <= upper)) >= 0.6
    # the weekly season matters: a daily-only model forecasts differently
    daily = build_model("mstl", HORIZON, seasons=[24], lookback=400).fit(panel["H1"][:-HORIZON])
    assert not np.allclose(daily.predict(windows[:1]), point[:1], atol=1e-3)


def test_save_load_and_bundle_forecast_reproduce(
    fitted: PerSeries, panel, frame: pd.DataFrame, preprocessor: Preprocessor, tmp_path: Path
) -> None:
    windows = np.stack([y[:-HORIZON] for y in panel.values()])
    fitted.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    assert isinstance(loaded, PerSeries) and loaded.name == "mstl"
    for got, expected in zip(
        loaded.predict_intervals(windows, ids=IDS),
        fitted.predict_intervals(windows, ids=IDS),
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)
    # what serving loads: the bundle, raw values in, original units out
    ForecastBundle(preprocessor, fitted, {"series_id": "m4"}).save(tmp_path / "bundle")
    bundle = ForecastBundle.load(tmp_path / "bundle")
    history = frame.groupby("unique_id", sort=False).nth(slice(-HORIZON - 400, -HORIZON))
    values = np.stack([g["y"].to_numpy(float) for _, g in history.groupby("unique_id", sort=False)])
    last_ds = history.groupby("unique_id", sort=False)["ds"].last().to_numpy()
    out = bundle.forecast(values, last_ds, ids=IDS)
    expected = preprocessor.inverse_transform_target(fitted.predict(windows, ids=IDS), IDS)
    np.testing.assert_allclose(out.yhat, expected, rtol=1e-6)


def test_bad_parameters_name_the_problem() -> None:
    with pytest.raises(ValueError, match="mstl seasons must be a non-empty list"):
        build_model("mstl", HORIZON, seasons=24)
    with pytest.raises(ValueError, match="mstl trend must be one of"):
        build_model("mstl", HORIZON, trend="mul")
    with pytest.raises(ValueError, match=r"at least 337 for season 168\), got 336"):
        build_model("mstl", HORIZON, seasons=[168, 24], lookback=336)
    with pytest.raises(ValueError, match="mstl needs at least 400 values, got 100"):
        build_model("mstl", HORIZON).fit(np.zeros(100))
    with pytest.raises(RuntimeError, match="mstl: call fit"):
        build_model("mstl", HORIZON).predict(np.zeros((1, 400)))
