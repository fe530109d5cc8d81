"""Exogenous regressors: the declaration and its errors, the models that use them on real
ETTh1 data (load columns historical, hour/day calendar terms future), and the bundle and pyfunc
that require future values and name the series and column when they are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import panel
from pipelines.bundle import ForecastBundle, ForecastInputError
from pipelines.config import ConfigError, CsvSource, DataConfig, PreprocessConfig, parse_config
from pipelines.data import DataValidationError, load_raw, validate, validate_panel
from pipelines.exogenous import ExogSpec, calendar_matrix, future_matrix
from pipelines.preprocess import Preprocessor
from pipelines.promotion import PromotionPolicy, compare_backtest
from pipelines.pyfunc_model import forecast_frame

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
HORIZON, TRAIN_END, END = 24, 1500, 2000
PARAMS = {
    "nlinear": {"lookback": 96, "alpha": 10.0, "exog_lags": 24},
    "xgboost": {"lookback": 48, "n_estimators": 40, "max_depth": 3, "min_child_weight": 5},
    "lightgbm": {"lookback": 48, "n_estimators": 40, "num_leaves": 8},
    "lstm": {"lookback": 48, "units": 16, "epochs": 4, "batch_size": 64},
    "mlp": {"lookback": 48, "units": 32, "layers": 1, "epochs": 6, "batch_size": 64},
}


def _config(**exogenous: object) -> dict:
    return {
        "name": "exog",
        "data": {"source": {"kind": "csv", "path": str(ETTH1)}, "time_column": "date",
                 "target_column": "OT", "exogenous": exogenous},
        "split": {"val_size": 24, "test_size": 24},
        "algorithms": {"nlinear": {}},
    }


def test_a_column_declared_twice_or_an_unknown_term_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.exogenous: .*\['HUFL'\] are declared more"):
        parse_config(_config(historical=["HUFL"], future=["HUFL"]))
    with pytest.raises(ConfigError, match=r"data\.exogenous\.calendar\.0: Input should be "
                                          r"'hour_of_day' or 'day_of_week'"):
        parse_config(_config(calendar=["month"]))
    # the earlier form: exog_columns are historical regressors
    cfg = DataConfig(source=CsvSource(path=ETTH1), exog_columns=["HUFL"])
    assert cfg.exogenous.historical == ["HUFL"] and cfg.exog_columns == ["HUFL"]


def test_a_regressor_opt_out_is_checked_against_the_declaration_and_the_model() -> None:
    cfg = _config(calendar=["hour_of_day"])
    cfg["algorithms"] = {"nlinear": {"exogenous": False}, "xgboost": {}}
    parsed = parse_config(cfg)
    assert not parsed.algorithms["nlinear"].exogenous and parsed.algorithms["xgboost"].exogenous
    with pytest.raises(ConfigError, match=r"algorithms\.nlinear\.exogenous: false, but "
                                          r"data\.exogenous declares no regressors"):
        parse_config({**_config(), "algorithms": {"nlinear": {"exogenous": False}}})
    cfg["algorithms"] = {"arima": {"exogenous": False}}
    with pytest.raises(ConfigError, match=r"algorithms\.arima\.exogenous: arima never uses "
                                          r"regressors"):
        parse_config(cfg)


def test_an_unknown_regressor_column_is_named_with_its_role() -> None:
    cfg = parse_config(_config(historical=["HUFL"], future=["price"])).data
    with pytest.raises(DataValidationError, match=r"'price' \(exogenous\.future\) not found; "
                                                  r"available columns: \['date', 'HUFL'"):
        load_raw(cfg)


def test_non_numeric_and_missing_regressor_values_are_named_by_series_column_row(
    tmp_path: Path,
) -> None:
    stamps = pd.date_range("2024-01-01", periods=10, freq="h").strftime("%Y-%m-%d %H:%M")
    rows = [f"a,{t},{i},{i * 2}" for i, t in enumerate(stamps)]
    rows += [f"b,{t},{i},{i * 3}" for i, t in enumerate(stamps)]
    rows[13] = f"b,{stamps[3]},3,high"  # non-numeric planned price
    for k in (1, 2, 3):  # three of ten missing in series a
        rows[k] = rows[k].rsplit(",", 1)[0] + ","
    (tmp_path / "p.csv").write_text("\n".join(["id,ds,y,price", *rows]))
    cfg = DataConfig(source=CsvSource(path=tmp_path / "p.csv"), id_column="id",
                     exogenous={"future": ["price"]})
    with pytest.raises(DataValidationError) as info:
        validate_panel(load_raw(cfg), cfg, min_rows=5, max_missing_fraction=0.2)
    text = str(info.value)
    assert "column 'price' (exogenous): 1 non-numeric value(s) at row 14 ('high')" in text
    assert "column 'price' (exogenous): 30.0% of values missing in series 'a' (3 of 10)" in text
    assert "missing at row 2, row 3, row 4" in text
    assert "'b': non-numeric 'price' (exogenous) at row 14 ('high')" in text


@pytest.fixture(scope="module")
def etth1() -> dict[str, np.ndarray]:
    """ETTh1 rows 0..END scaled with the statistics of the first TRAIN_END rows: target,
    the six load columns (historical) and hour/day-of-week terms (future)."""
    cfg = DataConfig(source=CsvSource(path=ETTH1), time_column="date", target_column="OT",
                     exogenous={"historical": LOADS, "calendar": ["hour_of_day", "day_of_week"]},
                     rows={"stop": END})
    frame = validate(load_raw(cfg), cfg, min_rows=END)
    pre = Preprocessor(PreprocessConfig()).fit(frame.iloc[:TRAIN_END])
    scaled = pre.transform(frame)
    spec = ExogSpec.from_config(cfg)
    ds = frame["ds"].to_numpy()
    return {"y": scaled["y"].to_numpy(), "ds": ds, "xh": scaled[LOADS].to_numpy(),
            "xf": future_matrix(spec, None, ds), "pre": pre, "frame": frame, "spec": spec}


def _forecast(model, data, origins, exog=True):
    regs = ([data["xh"]], [data["xf"]]) if exog else (None, None)
    return panel.forecast(model, [data["y"]], [data["ds"]], [origins], ["ETTh1"], *regs)[0]


@pytest.mark.parametrize("algorithm", sorted(PARAMS))
def test_regressors_change_the_forecasts_of_the_models_that_use_them(algorithm, etth1,
                                                                      tmp_path: Path) -> None:
    d = etth1
    train = slice(0, TRAIN_END)
    plain = panel.fit(algorithm, HORIZON, PARAMS[algorithm], [d["y"][train]], [d["ds"][train]],
                      ["ETTh1"])
    with_x = panel.fit(algorithm, HORIZON, PARAMS[algorithm], [d["y"][train]],
                       [d["ds"][train]], ["ETTh1"], [d["xh"][train]], [d["xf"][train]])
    assert plain.exog_inputs == (0, 0) and with_x.exog_inputs == (6, 4)
    origins = np.arange(TRAIN_END, END - HORIZON, 7)
    actual = sliding_window_view(d["y"], HORIZON)[origins]
    base, used = _forecast(plain, d, origins, exog=False), _forecast(with_x, d, origins)
    assert np.abs(base - used).mean() > 1e-3
    assert np.isfinite(used).all() and np.abs(used - actual).mean() < 1.5 * np.abs(
        base - actual).mean()
    # the future terms at the forecast steps are read: other hours, other forecasts
    moved = {**d, "xf": np.roll(d["xf"], 6, axis=0)}
    assert np.abs(_forecast(with_x, moved, origins) - used).max() > 1e-6
    # ... and so are the historical loads up to the origin
    loads = {**d, "xh": d["xh"] + 1.0}
    assert np.abs(_forecast(with_x, loads, origins) - used).max() > 1e-6
    # a saved model reads back with its regressor widths
    with_x.save(tmp_path / "m")
    loaded = type(with_x).load(tmp_path / "m")
    assert loaded.exog_inputs == (6, 4)
    np.testing.assert_allclose(_forecast(loaded, d, origins), used, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("algorithm", ["seasonal_naive", "arima"])
def test_models_without_regressor_support_ignore_them(algorithm, etth1) -> None:
    d = etth1
    params = {"arima": {"p": 1, "d": 1, "q": 0, "fit_window": 400}}.get(algorithm, {})
    model = panel.fit(algorithm, HORIZON, params, [d["y"][:TRAIN_END]], [d["ds"][:TRAIN_END]],
                      ["ETTh1"], [d["xh"][:TRAIN_END]], [d["xf"][:TRAIN_END]])
    assert model.exog_inputs == (0, 0)


def test_calendar_terms_are_sin_cos_of_hour_and_weekday() -> None:
    ds = np.array(["2024-01-01T06:00", "2024-01-06T18:00"], dtype="datetime64[ns]")  # Mon, Sat
    m = calendar_matrix(ds, ("hour_of_day", "day_of_week"))
    np.testing.assert_allclose(m[0], [1.0, 0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(m[1, :2], [-1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(m[1, 2:], [np.sin(2 * np.pi * 5 / 7), np.cos(2 * np.pi * 5 / 7)])


@pytest.fixture(scope="module")
def bundle(etth1, tmp_path_factory: pytest.TempPathFactory) -> ForecastBundle:
    """nlinear with HUFL historical and MUFL future (a planned load), saved and loaded."""
    d = etth1
    spec = ExogSpec(historical=("HUFL",), future=("MUFL",), calendar=("hour_of_day",))
    frame = d["frame"]
    pre = Preprocessor(PreprocessConfig()).fit(frame.iloc[:TRAIN_END])
    scaled = pre.transform(frame)
    xh = scaled[["HUFL"]].to_numpy()
    xf = future_matrix(spec, scaled[["MUFL"]].to_numpy(), d["ds"])
    model = panel.fit("nlinear", HORIZON, {"lookback": 48, "alpha": 1.0},
                      [scaled["y"].to_numpy()[:TRAIN_END]], [d["ds"][:TRAIN_END]], ["ETTh1"],
                      [xh[:TRAIN_END]], [xf[:TRAIN_END]])
    model.interval_halfwidth = np.full(HORIZON, 0.1)
    path = tmp_path_factory.mktemp("bundle")
    ForecastBundle(pre, model, {"series_id": "ETTh1", "exogenous": spec.to_dict()}).save(path)
    return ForecastBundle.load(path)


def test_the_bundle_needs_the_future_values_and_names_series_and_column(bundle, etth1) -> None:
    frame = etth1["frame"]
    past, ahead = frame.iloc[1700:1748], frame.iloc[1748:1748 + HORIZON]
    args = (past["y"].to_numpy()[None], past["ds"].to_numpy()[-1:], HORIZON, ["ETTh1"])
    exog = {"HUFL": past["HUFL"].to_numpy()[None]}
    future = {"MUFL": ahead["MUFL"].to_numpy()[None]}
    fc = bundle.forecast(*args, exog, future)
    assert fc.yhat.shape == (1, HORIZON)
    assert np.abs(bundle.forecast(*args, exog, {"MUFL": future["MUFL"] * 2}).yhat
                  - fc.yhat).max() > 1e-3
    with pytest.raises(ForecastInputError, match=r"future_exog\.MUFL: series 'ETTh1': "
                                                 r"regressor 'MUFL' is missing"):
        bundle.forecast(*args, exog, None)
    with pytest.raises(ForecastInputError, match=r"'MUFL' has 5 values; this model needs at "
                                                 r"least 24 future values"):
        bundle.forecast(*args, exog, {"MUFL": future["MUFL"][:, :5]})
    nan = future["MUFL"].copy()
    nan[0, 2] = np.nan
    with pytest.raises(ForecastInputError, match="'MUFL' value 2 is missing, NaN or inf"):
        bundle.forecast(*args, exog, {"MUFL": nan})
    # the pyfunc frame: history rows, then future rows without y
    rows = frame.iloc[1700:1748 + HORIZON][["ds", "y", "HUFL", "MUFL"]].copy()
    rows.loc[rows.index[48:], ["y", "HUFL"]] = np.nan
    out = forecast_frame(bundle, rows.assign(unique_id="ETTh1"), HORIZON)
    np.testing.assert_allclose(out["yhat"].to_numpy(), fc.yhat[0])
    with pytest.raises(ForecastInputError, match="regressor column 'MUFL' is missing"):
        forecast_frame(bundle, rows.drop(columns="MUFL"), HORIZON)


def test_the_promotion_backtest_reads_the_regressors_from_the_data(bundle, etth1) -> None:
    frame = etth1["frame"].iloc[1500:2000].reset_index(drop=True)
    policy = PromotionPolicy(backtest_rows=200)
    _, mae = compare_backtest(bundle, bundle, frame, policy)
    assert 0 < mae["champion"] == mae["challenger"] < 5
    with pytest.raises(ValueError, match=r"regressor columns \['MUFL'\] are not in the data"):
        compare_backtest(bundle, bundle, frame.drop(columns="MUFL"), policy)
