"""The tree models' ``direct`` strategy (one booster per horizon step or block of steps)
beside the default recursive roll-out, on a small M4 hourly slice and a noisy chaotic map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.bundle import ForecastBundle
from pipelines.config import PreprocessConfig
from pipelines.models.base import Forecaster
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor
from pipelines.pyfunc_model import forecast_frame

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
HORIZON, LOOKBACK, HOURS = 12, 48, 300
TINY = {
    "xgboost": {"lookback": LOOKBACK, "n_estimators": 20, "max_depth": 3},
    "lightgbm": {"lookback": LOOKBACK, "n_estimators": 20, "num_leaves": 8},
}


@pytest.fixture(scope="module")
def panel() -> tuple[list[np.ndarray], np.ndarray]:
    """Three M4 hourly series (their last HOURS values, standardised each) for training, and
    the test windows: the last LOOKBACK values before each series' final HORIZON."""
    data = pd.read_parquet(M4)
    ids = data["unique_id"].unique()[:3]
    series = []
    for uid in ids:
        y = data.loc[data["unique_id"] == uid, "y"].to_numpy(float)[-HOURS:]
        series.append((y - y.mean()) / y.std())
    train = [y[:-HORIZON] for y in series]
    windows = np.stack([y[-HORIZON - LOOKBACK : -HORIZON] for y in series])
    return train, windows


@pytest.mark.parametrize("name", list(TINY))
def test_both_strategies_forecast_every_step(
        name: str, panel: tuple[list[np.ndarray], np.ndarray]) -> None:
    train, windows = panel
    recursive = build_model(name, HORIZON, **TINY[name]).fit(train)
    direct = build_model(name, HORIZON, strategy="direct", **TINY[name]).fit(train)
    blocks = build_model(name, HORIZON, strategy="direct", direct_steps=4, **TINY[name])
    blocks.fit(train)
    for model in (recursive, direct, blocks):
        forecast = model.predict(windows)
        assert forecast.shape == (3, HORIZON) and np.isfinite(forecast).all()
    assert recursive.booster is not None and recursive.boosters is None
    assert direct.booster is None and len(direct.boosters) == HORIZON
    assert len(blocks.boosters) == 4 and [len(b) for b in blocks.blocks()] == [3, 3, 3, 3]
    assert not np.allclose(direct.predict(windows), recursive.predict(windows))


@pytest.mark.parametrize("name", list(TINY))
def test_direct_save_load_gives_identical_forecasts(
        name: str, panel: tuple[list[np.ndarray], np.ndarray], tmp_path: Path) -> None:
    train, windows = panel
    model = build_model(name, HORIZON, strategy="direct", direct_steps=5, **TINY[name])
    model.fit(train)
    origins = np.arange(LOOKBACK + 100, len(train[0]) - HORIZON + 1, 7)
    model.calibrate(train[0], origins)
    model.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    assert loaded.params == model.params and loaded.direct and len(loaded.boosters) == 5
    for before, after in zip(model.predict_intervals(windows), loaded.predict_intervals(windows),
                             strict=True):
        np.testing.assert_array_equal(after, before)


def test_direct_with_calendar_and_regressors_uses_the_predicted_steps_rows() -> None:
    """Calendar and future-regressor columns are the predicted step's: a series driven only by
    a known future regressor is forecast from that step's value at every step."""
    rng = np.random.default_rng(0)
    n = 600
    ds = np.datetime64("2024-01-01T00") + np.arange(n) * np.timedelta64(1, "h")
    xf = rng.choice([0.0, 1.0], size=(n, 1))
    y = 3.0 * xf[:, 0] + 0.05 * rng.standard_normal(n)
    model = build_model("lightgbm", HORIZON, lookback=24, n_estimators=60, strategy="direct",
                        direct_steps=3, calendar=True)
    model.fit([y[:500]], [ds[:500]], xf=[xf[:500]])
    origins = np.arange(500, n - HORIZON + 1, 5)
    forecast = model.predict(np.stack([y[o - 24 : o] for o in origins]), ds[origins - 1],
                             xf=np.stack([xf[o : o + HORIZON] for o in origins]))
    actual = sliding_window_view(y, HORIZON)[origins]
    assert np.abs(forecast - actual).mean() < 0.3  # the regressor's swings are 3.0


def _logistic_map(n: int, seed: int) -> np.ndarray:
    """A noisy chaotic logistic map: one step is easy to learn, a roll-out diverges."""
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = 0.3
    for t in range(1, n):
        x[t] = np.clip(3.9 * x[t - 1] * (1 - x[t - 1]) + 0.01 * rng.standard_normal(), 0, 1)
    return x


def test_direct_is_not_worse_where_the_roll_out_compounds_errors() -> None:
    """On a chaotic series a recursive roll-out's errors compound; direct does not feed its
    forecasts back, so its error stays at most the series' spread."""
    y = _logistic_map(3000, seed=1)
    params = {"lookback": 8, "n_estimators": 100, "max_depth": 4, "min_child_weight": 5}
    recursive = build_model("xgboost", HORIZON, **params).fit(y[:2500])
    direct = build_model("xgboost", HORIZON, strategy="direct", **params).fit(y[:2500])
    origins = np.arange(2500, 3000 - HORIZON + 1)
    actual = sliding_window_view(y, HORIZON)[origins]
    mse = {m.strategy: np.mean((m.forecast_origins(y, origins) - actual) ** 2)
           for m in (recursive, direct)}
    assert mse["direct"] < mse["recursive"], mse


def test_bad_strategy_or_direct_steps_is_named() -> None:
    with pytest.raises(ValueError, match="strategy must be 'recursive' or 'direct'"):
        build_model("lightgbm", HORIZON, strategy="multi")
    with pytest.raises(ValueError, match=r"direct_steps must be in \[1, horizon=12\]"):
        build_model("xgboost", HORIZON, strategy="direct", direct_steps=13)
    with pytest.raises(ValueError, match="lookback\\+horizon=60"):
        build_model("xgboost", HORIZON, strategy="direct", lookback=48).fit(np.arange(59.0))


def test_a_direct_bundle_serves_the_same_forecast_frame_after_save_and_load(
        tmp_path: Path) -> None:
    """Serving's path (``ForecastBundle`` -> ``forecast_frame``) with a direct LightGBM."""
    data = pd.read_parquet(M4)
    uid = data["unique_id"].iloc[0]
    frame = data.loc[data["unique_id"] == uid, ["ds", "y"]].tail(HOURS).reset_index(drop=True)
    pre = Preprocessor(PreprocessConfig()).fit(frame.iloc[:200].assign(unique_id=uid))
    y = pre.transform_target(frame["y"].to_numpy(float))
    model = build_model("lightgbm", HORIZON, strategy="direct", direct_steps=3, **TINY["lightgbm"])
    model.fit(y[:200]).calibrate(y, np.arange(200, 250))
    bundle = ForecastBundle(pre, model, {"series_id": uid})
    history = frame.iloc[200:260]
    before = forecast_frame(bundle, history, HORIZON)
    loaded = ForecastBundle.load(bundle.save(tmp_path / "bundle"))
    assert len(loaded.forecaster.boosters) == 3
    pd.testing.assert_frame_equal(forecast_frame(loaded, history, HORIZON), before)
    assert before["yhat"].notna().all() and len(before) == HORIZON


def test_optuna_searches_the_strategy_where_the_space_is_declared(tmp_path: Path) -> None:
    """``strategy`` as a categorical of a config's search space: the trials try both (seed 0
    draws each once), and on the chaotic series (where the roll-out compounds errors) direct
    has the best CV score."""
    import optuna

    from pipelines.config import AlgorithmConfig, SearchParam, TuningConfig
    from pipelines.tuning import tune

    y = _logistic_map(1200, seed=2)
    algo = AlgorithmConfig(
        params={"lookback": 8, "n_estimators": 30, "num_leaves": 8},
        search_space={"strategy": SearchParam(type="categorical",
                                              choices=["recursive", "direct"])},
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = tune("lightgbm", algo, y, None, HORIZON, TuningConfig(n_trials=2, cv_folds=2, seed=0),
                  storage, "strategy", 1.0, min_train=600)
    study = optuna.load_study(study_name="strategy", storage=storage)
    tried = {t.params["strategy"] for t in study.trials}
    assert tried == {"recursive", "direct"}
    assert result.best_params["strategy"] == "direct"
