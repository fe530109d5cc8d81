"""nlinear's ``window_scale: seasonal`` on the tree models (XGBoost, LightGBM), recursive and
direct, on a small M4 hourly slice: rows and targets over each window's scale, forecasts
multiplied back, save/load, and bad values refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.models.base import Forecaster
from pipelines.models.registry import build_model
from pipelines.models.window_scale import WindowScale

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
HORIZON, LOOKBACK, HOURS = 12, 72, 400
SCALED = {"window_scale": "seasonal", "season": 24, "scale_offset": 0.03}
TINY = {
    "xgboost": {"lookback": LOOKBACK, "n_estimators": 20, "max_depth": 3},
    "lightgbm": {"lookback": LOOKBACK, "n_estimators": 20, "num_leaves": 8},
}
STRATEGIES = [{"strategy": "recursive"}, {"strategy": "direct", "direct_steps": 3}]


@pytest.fixture(scope="module")
def panel() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Four M4 hourly series (their last HOURS values, standardised each): training series,
    the test windows (LOOKBACK values before each final HORIZON) and the actual HORIZON."""
    data = pd.read_parquet(M4)
    series = []
    for uid in data["unique_id"].unique()[:4]:
        y = data.loc[data["unique_id"] == uid, "y"].to_numpy(float)[-HOURS:]
        series.append((y - y.mean()) / y.std())
    windows = np.stack([y[-HORIZON - LOOKBACK : -HORIZON] for y in series])
    return [y[:-HORIZON] for y in series], windows, np.stack([y[-HORIZON:] for y in series])


def test_the_scale_is_the_windows_mean_seasonal_difference(panel) -> None:
    _, windows, _ = panel
    scale = WindowScale("seasonal", 24, 0.03)(windows)
    manual = [np.mean(np.abs(w[24:] - w[:-24])) + 0.03 for w in windows]
    np.testing.assert_allclose(scale[:, 0], manual, rtol=1e-12)
    np.testing.assert_array_equal(WindowScale()(windows), np.ones((len(windows), 1)))
    assert WindowScale("seasonal", 24, 0.0)(np.zeros((2, 48)))[:, 0].tolist() == [1e-3, 1e-3]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s["strategy"])
@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_rows_and_targets_are_over_the_windows_scale(panel, name: str, strategy: dict) -> None:
    train, _, _ = panel
    model = build_model(name, HORIZON, **TINY[name], **strategy, window_scale="seasonal")
    v = train[0]
    if model.direct:
        steps = np.random.default_rng(0).integers(1, 5, len(v) - LOOKBACK - 3)
        rows, target = model.direct_rows(v, None, None, None, steps)
        stretched, target3 = model.direct_rows(3.0 * v + 5.0, None, None, None, steps)
        ahead = np.arange(len(steps)) + LOOKBACK + steps - 1
    else:
        rows, target = model.series_rows(v, None, None, None, None)
        stretched, target3 = model.series_rows(3.0 * v + 5.0, None, None, None, None)
        ahead = np.arange(len(target)) + LOOKBACK
    windows = np.lib.stride_tricks.sliding_window_view(v, LOOKBACK)[: len(target)]
    scale = model.scaler(windows)[:, 0]
    # unscaling the target gives back the value it predicts
    np.testing.assert_allclose(target * scale + windows[:, -1], v[ahead], rtol=1e-10)
    # without an offset 3v + 5 gives the same rows (but the last value) and targets
    np.testing.assert_allclose(stretched[:, 1:], rows[:, 1:], atol=1e-9)
    np.testing.assert_allclose(target3, target, atol=1e-9)
    np.testing.assert_allclose(stretched[:, 0], 3.0 * rows[:, 0] + 5.0)
    plain_rows, plain_target = (build_model(name, HORIZON, **TINY[name], **strategy)
                                .series_rows(v, None, None, None, None) if not model.direct
                                else build_model(name, HORIZON, **TINY[name], **strategy)
                                .direct_rows(v, None, None, None, steps))
    np.testing.assert_allclose(plain_target, target * scale, rtol=1e-10)
    np.testing.assert_allclose(plain_rows[:, 1:LOOKBACK], rows[:, 1:LOOKBACK] * scale[:, None],
                               rtol=1e-10)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s["strategy"])
@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_scaled_trees_forecast_m4_and_reload(panel, tmp_path: Path, name: str,
                                             strategy: dict) -> None:
    train, windows, actual = panel
    model = build_model(name, HORIZON, **TINY[name], **strategy, **SCALED).fit(train)
    pred = model.predict(windows)
    plain = build_model(name, HORIZON, **TINY[name], **strategy).fit(train).predict(windows)
    assert pred.shape == (4, HORIZON) and np.isfinite(pred).all()
    assert not np.allclose(pred, plain)
    # the first step is the last value plus the booster's change times the window's scale
    scale = model.scaler(windows)[:, 0]
    features = model._features(windows, None, model.scaler(windows))
    if model.direct:
        features[:, model._step_column] = 1
    booster = model.boosters[0] if model.direct else model.booster
    np.testing.assert_allclose(
        pred[:, 0], windows[:, -1] + model._predict_rows(features, booster) * scale, rtol=1e-6)
    # the scaled trees forecast this slice about as well as the plain ones (20 rounds each)
    error, plain_error = np.mean(np.abs(pred - actual)), np.mean(np.abs(plain - actual))
    assert error < 1.2 * plain_error, (error, plain_error)
    model.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    assert loaded.scaler == WindowScale("seasonal", 24, 0.03)
    np.testing.assert_array_equal(loaded.predict(windows), pred)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "nlinear"])
@pytest.mark.parametrize(("params", "message"), [
    ({"window_scale": "level"}, "window_scale must be 'none' or 'seasonal', got 'level'"),
    ({"window_scale": "seasonal", "lookback": 24},
     "needs 1 <= season < lookback=24, got season 24"),
    ({"window_scale": "seasonal", "season": 0}, "got season 0"),
    ({"window_scale": "seasonal", "scale_offset": -0.1}, "scale_offset must be >= 0, got -0.1"),
])
def test_bad_window_scales_name_the_model_and_field(name: str, params: dict,
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=f"{name}: .*{message}"):
        build_model(name, HORIZON, **params)
