"""Every registered forecaster on a small ETTh1 slice: intervals, persistence, consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.models.base import Forecaster
from pipelines.models.registry import MODELS, build_model, get_model_class

DATA = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"
HORIZON = 24
TRAIN_END, VAL_END, TEST_END = 1000, 1250, 1500
CONTEXT = 200  # history length handed to predict; at least every model's min_history
TINY_PARAMS: dict[str, dict[str, object]] = {
    "seasonal_naive": {},
    "nlinear": {"lookback": 96},
    "arima": {"p": 1, "d": 1, "q": 1, "fit_window": 600},
    "xgboost": {"lookback": 48, "n_estimators": 40, "max_depth": 3, "min_child_weight": 5},
    "lightgbm": {"lookback": 48, "n_estimators": 40, "num_leaves": 8},
    "lstm": {"lookback": 48, "units": 16, "epochs": 2, "batch_size": 64},
    "ets": {"trend": "add", "damped": True, "lookback": 168},
    "theta": {"lookback": 168},
    "mstl": {"seasons": [24], "lookback": 168},
    "mlp": {"lookback": 48, "units": 32, "layers": 1, "epochs": 3, "batch_size": 64},
}


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray]:
    """The first rows of ETTh1 OT, standardised with the train part's mean and std."""
    frame = pd.read_csv(DATA, nrows=TEST_END)
    ot = frame["OT"].to_numpy(dtype=float)
    y = (ot - ot[:TRAIN_END].mean()) / ot[:TRAIN_END].std()
    return y, pd.to_datetime(frame["date"]).to_numpy()


@pytest.fixture(scope="module")
def holdout(series: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Test windows: CONTEXT values before each origin, the HORIZON values after it."""
    y, ds = series
    origins = np.arange(VAL_END, TEST_END - HORIZON + 1, 3)
    return {
        "origins": origins,
        "histories": sliding_window_view(y, CONTEXT)[origins - CONTEXT],
        "last_ds": ds[origins - 1],
        "actual": sliding_window_view(y, HORIZON)[origins],
    }


def _fit(name: str, series: tuple[np.ndarray, np.ndarray]) -> Forecaster:
    y, ds = series
    model = build_model(name, HORIZON, **TINY_PARAMS[name])
    model.fit(y[:TRAIN_END], ds[:TRAIN_END])
    model.calibrate(y[:VAL_END], np.arange(TRAIN_END, VAL_END - HORIZON + 1), ds[:VAL_END])
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request: pytest.FixtureRequest, series: tuple[np.ndarray, np.ndarray]) -> Forecaster:
    """Each registered model fitted on train and calibrated on validation."""
    return _fit(request.param, series)


@pytest.fixture(scope="module")
def naive_mae(series: tuple[np.ndarray, np.ndarray], holdout: dict[str, np.ndarray]) -> float:
    model = _fit("seasonal_naive", series)
    return float(np.mean(np.abs(model.predict(holdout["histories"]) - holdout["actual"])))


def test_intervals_are_ordered_and_cover(
    fitted: Forecaster, holdout: dict[str, np.ndarray]
) -> None:
    point, lower, upper = fitted.predict_intervals(holdout["histories"], holdout["last_ds"])
    shape = (len(holdout["origins"]), HORIZON)
    assert point.shape == lower.shape == upper.shape == shape
    assert np.isfinite(point).all() and np.isfinite(lower).all() and np.isfinite(upper).all()
    assert (lower <= point).all() and (point <= upper).all()
    actual = holdout["actual"]
    coverage = np.mean((lower <= actual) & (actual <= upper))
    assert 0.7 <= coverage <= 1.0, f"{fitted.name} coverage {coverage:.3f} at level 0.9"


def test_accuracy_near_seasonal_naive(
    fitted: Forecaster, holdout: dict[str, np.ndarray], naive_mae: float
) -> None:
    mae = np.mean(
        np.abs(fitted.predict(holdout["histories"], holdout["last_ds"]) - holdout["actual"])
    )
    assert mae < 1.6 * naive_mae, f"{fitted.name} MAE {mae:.3f} vs seasonal naive {naive_mae:.3f}"


def test_nlinear_beats_seasonal_naive(
    series: tuple[np.ndarray, np.ndarray], holdout: dict[str, np.ndarray], naive_mae: float
) -> None:
    model = _fit("nlinear", series)
    mae = np.mean(np.abs(model.predict(holdout["histories"]) - holdout["actual"]))
    assert mae < naive_mae


def test_save_load_round_trip(
    fitted: Forecaster, holdout: dict[str, np.ndarray], tmp_path: Path
) -> None:
    fitted.save(tmp_path / "model")
    loaded = Forecaster.load(tmp_path / "model")
    assert type(loaded) is type(fitted) and loaded.params == fitted.params
    before = fitted.predict_intervals(holdout["histories"], holdout["last_ds"])
    after = loaded.predict_intervals(holdout["histories"], holdout["last_ds"])
    for expected, got in zip(before, after, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_forecast_origins_matches_predict(
    fitted: Forecaster, series: tuple[np.ndarray, np.ndarray]
) -> None:
    y, ds = series
    origins = np.array([VAL_END, VAL_END + 37, TEST_END - HORIZON])
    fast = fitted.forecast_origins(y, origins, ds)
    one_by_one = np.concatenate([fitted.predict(y[None, :o], ds[o - 1 : o]) for o in origins])
    np.testing.assert_allclose(fast, one_by_one, rtol=0, atol=1e-5)


def test_short_history_names_required_length(fitted: Forecaster) -> None:
    need = fitted.min_history
    with pytest.raises(ValueError, match=f"at least {need} past values"):
        fitted.predict(np.zeros((2, need - 1)))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(("horizon", "level"), [(0, 0.9), (-3, 0.9), (24, 0.0), (24, 1.5)])
def test_bad_horizon_or_level(name: str, horizon: int, level: float) -> None:
    with pytest.raises(ValueError, match=r"horizon|level"):
        build_model(name, horizon, level=level)


def test_unknown_algorithm_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown algorithm 'prophet'.*nlinear"):
        get_model_class("prophet")


@pytest.mark.parametrize("name", ["xgboost", "lstm", "mlp"])
def test_seeded_fit_is_reproducible(
    name: str, series: tuple[np.ndarray, np.ndarray], holdout: dict[str, np.ndarray]
) -> None:
    first, second = _fit(name, series), _fit(name, series)
    np.testing.assert_array_equal(
        first.predict(holdout["histories"], holdout["last_ds"]),
        second.predict(holdout["histories"], holdout["last_ds"]),
    )


def test_xgboost_calendar_follows_fit_timestamps(
    series: tuple[np.ndarray, np.ndarray], holdout: dict[str, np.ndarray]
) -> None:
    y, ds = series
    model = build_model("xgboost", HORIZON, **{**TINY_PARAMS["xgboost"], "calendar": True})
    with_ds = model.fit(y[:TRAIN_END], ds[:TRAIN_END])
    assert with_ds.params["calendar"] is True
    with pytest.raises(ValueError, match="last_ds"):
        with_ds.predict(holdout["histories"])
    with pytest.raises(ValueError, match="one timestamp per value"):
        model.fit(y[:TRAIN_END], ds)
    without = build_model("xgboost", HORIZON, **TINY_PARAMS["xgboost"]).fit(y[:TRAIN_END])
    assert without.params["calendar"] is False
    assert np.isfinite(without.predict(holdout["histories"])).all()


def test_arima_fast_path_matches_get_forecast(series: tuple[np.ndarray, np.ndarray]) -> None:
    y, _ = series
    model = build_model("arima", HORIZON, p=2, d=1, q=1, trend="n", fit_window=500)
    model.fit(y[:TRAIN_END])
    origins = np.array([50, 700, TEST_END])
    fast = model.forecast_origins(y, origins)
    for row, origin in zip(fast, origins, strict=True):
        exact = model.results.apply(y[:origin]).get_forecast(HORIZON).predicted_mean
        np.testing.assert_allclose(row, exact, rtol=0, atol=1e-6)


def test_arima_seasonal_fast_path_with_constant(series: tuple[np.ndarray, np.ndarray]) -> None:
    y, _ = series
    params = {"p": 1, "d": 0, "q": 0, "P": 1, "s": 24, "trend": "c", "fit_window": 400}
    model = build_model("arima", HORIZON, **params).fit(y[:TRAIN_END])
    exact = model.results.apply(y[:VAL_END]).get_forecast(HORIZON).predicted_mean
    np.testing.assert_allclose(model.forecast_origins(y, [VAL_END])[0], exact, atol=1e-6)


def test_arima_intervals_are_native(series: tuple[np.ndarray, np.ndarray]) -> None:
    y, _ = series
    model = build_model("arima", HORIZON, p=1, d=1, q=1, fit_window=500).fit(y[:TRAIN_END])
    halfwidth = model.interval_halfwidth.copy()
    assert (np.diff(halfwidth) >= 0).all()  # uncertainty grows with the horizon
    np.testing.assert_array_equal(model.calibrate(y, np.arange(1000, 1100)), halfwidth)
    _, lower, upper = model.predict_intervals(y[None, :TRAIN_END])
    np.testing.assert_allclose((upper - lower)[0] / 2, halfwidth, rtol=1e-6)
    with pytest.raises(ValueError, match="trend"):
        build_model("arima", HORIZON, trend="ct")


# ----- panels: global models across series, local models per series --------------------------
def _panel(n_series: int = 3, n: int = 300) -> list[np.ndarray]:
    """Seasonal series with different phases (scaled values, as models see them)."""
    t = np.arange(n)
    rng = np.random.default_rng(3)
    return [np.sin(2 * np.pi * (t + 5 * k) / 24) + 0.1 * rng.standard_normal(n)
            for k in range(n_series)]


@pytest.mark.parametrize("name", ["nlinear", "xgboost", "lightgbm", "seasonal_naive"])
def test_global_model_fits_a_panel_without_crossing_series(name: str) -> None:
    panel = _panel()
    params = {"nlinear": {"lookback": 48}, "xgboost": {"lookback": 48, "n_estimators": 20},
              "lightgbm": {"lookback": 48, "n_estimators": 20}, "seasonal_naive": {}}[name]
    model = build_model(name, 12, **params).fit(panel)
    windows = np.stack([y[-model.min_history :] for y in panel])
    assert model.predict(windows).shape == (3, 12)
    if name == "nlinear":  # windows of the panel: 3 * (300 - 48 - 12 + 1), none across series
        one = build_model(name, 12, **params).fit(np.concatenate(panel))
        assert not np.allclose(one.coef, model.coef)


def test_per_series_local_models_save_load_and_name_unknown_series(tmp_path: Path) -> None:
    from pipelines.models.per_series import PerSeries

    panel = _panel(2, 200)
    model = PerSeries(6, algorithm="arima", p=1, d=0, q=0).fit(panel, ids=["a", "b"])
    assert model.name == "arima" and model.local
    assert model.model("a").results.params[0] != model.model("b").results.params[0]
    windows = np.stack([panel[0][-50:], panel[1][-50:]])
    point, lower, upper = model.predict_intervals(windows, ids=["a", "b"])
    assert point.shape == (2, 6) and (lower <= point).all() and (point <= upper).all()
    np.testing.assert_allclose(point[0], model.model("a").predict(windows[:1])[0])
    model.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    assert isinstance(loaded, PerSeries) and loaded.ids == ["a", "b"] and not loaded.models
    np.testing.assert_allclose(loaded.predict(windows, ids=["a", "b"]), point)
    with pytest.raises(KeyError, match=r"unknown series 'zz'.*2 series"):
        loaded.predict(windows, ids=["a", "zz"])
