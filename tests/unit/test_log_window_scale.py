"""M4 hourly's accuracy options: ``preprocess.target_transform: log`` and nlinear's
``window_scale: seasonal``, on real M4 hourly series (fit, forecast, save/load, serving)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import evaluation
from pipelines.bundle import ForecastBundle, ForecastInputError
from pipelines.config import PreprocessConfig, parse_config
from pipelines.models.base import Forecaster
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor
from pipelines.pyfunc_model import forecast_frame

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
HORIZON, TEST = 48, 48


@pytest.fixture(scope="module")
def m4() -> pd.DataFrame:
    """Twelve M4 hourly series, each cut to its last 600 values."""
    frame = pd.read_parquet(M4)
    frame = frame[frame["unique_id"].isin(frame["unique_id"].unique()[:12])]
    frame = frame.groupby("unique_id", sort=False).tail(600).reset_index(drop=True)
    frame["unique_id"] = frame["unique_id"].astype(str)
    return frame


def _scaled(m4: pd.DataFrame, transform: str) -> tuple[Preprocessor, list[np.ndarray]]:
    train = m4.groupby("unique_id", sort=False).head(600 - TEST)
    pre = Preprocessor(PreprocessConfig(target_transform=transform)).fit(train)
    scaled = pre.transform(m4)
    return pre, [g["y"].to_numpy() for _, g in scaled.groupby("unique_id", sort=False)]


def test_log_transform_round_trips_and_fits_on_logs(m4: pd.DataFrame) -> None:
    pre, scaled = _scaled(m4, "log")
    first = m4[m4["unique_id"] == pre.series_ids[0]]["y"].to_numpy()
    log_train = np.log(first[:-TEST])
    assert pre.series[pre.series_ids[0]]["y"]["center"] == pytest.approx(log_train.mean())
    assert pre.series[pre.series_ids[0]]["y"]["mean"] == pytest.approx(first[:-TEST].mean())
    np.testing.assert_allclose(scaled[0][:-TEST].mean(), 0.0, atol=1e-9)
    ids = [pre.series_ids[0]] * 3
    windows = np.stack([first[:24], first[24:48], first[48:72]])
    np.testing.assert_allclose(pre.transform_target(windows, ids), np.stack(
        [scaled[0][:24], scaled[0][24:48], scaled[0][48:72]]))
    np.testing.assert_allclose(
        pre.inverse_transform_target(pre.transform_target(windows, ids), ids), windows,
        rtol=1e-12)
    reloaded = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(reloaded.transform_target(windows, ids),
                                  pre.transform_target(windows, ids))


def test_log_transform_refuses_values_that_are_not_positive(m4: pd.DataFrame) -> None:
    bad = m4.copy()
    uid = bad["unique_id"].unique()[3]
    bad.loc[bad.index[bad["unique_id"] == uid][7], "y"] = 0.0
    with pytest.raises(ValueError, match=rf"needs y > 0: 1 value\(s\) <= 0, the first 0 at "
                                         rf"row 7 of series '{uid}'"):
        Preprocessor(PreprocessConfig(target_transform="log")).fit(bad)
    pre = Preprocessor(PreprocessConfig(target_transform="log")).fit(m4)
    with pytest.raises(ValueError, match=f"series '{uid}'"):
        pre.transform(bad)
    with pytest.raises(ValueError, match="Input should be 'none' or 'log'"):
        PreprocessConfig(target_transform="sqrt")


def _test_errors(m4: pd.DataFrame, transform: str, **params: object) -> tuple[float, float]:
    """Mean test sMAPE and MASE of nlinear (or, with ``snaive=True``, of seasonal naive)
    over the slice's series (the last 48 values)."""
    snaive = bool(params.pop("snaive", False))
    pre, scaled = _scaled(m4, transform)
    model = build_model("nlinear", HORIZON, lookback=336, alpha=100.0, **params)
    model.fit([v[:-TEST] for v in scaled])
    smapes, mases = [], []
    for uid, v in zip(pre.series_ids, scaled, strict=True):
        pred = pre.inverse_transform_target(model.predict(v[None, :-TEST]), [uid])[0]
        y = m4[m4["unique_id"] == uid]["y"].to_numpy()
        if snaive:
            pred = np.tile(y[-TEST - 24 : -TEST], 2)
        smapes.append(evaluation.smape(y[-TEST:], pred))
        mases.append(np.mean(np.abs(y[-TEST:] - pred)) / evaluation.mase_scale(y[:-TEST], 24))
    return float(np.mean(smapes)), float(np.mean(mases))


def test_log_and_seasonal_window_scale_beat_seasonal_naive_on_m4(m4: pd.DataFrame) -> None:
    snaive = _test_errors(m4, "none", snaive=True)  # sMAPE 5.43, MASE 1.07
    both = _test_errors(m4, "log", window_scale="seasonal")  # 3.88, 0.77
    assert both[0] < 0.8 * snaive[0] and both[1] < 0.8 * snaive[1], (snaive, both)


def test_seasonal_window_scale_is_affine_equivariant_and_saves(
    m4: pd.DataFrame, tmp_path: Path
) -> None:
    _, scaled = _scaled(m4, "none")
    model = build_model("nlinear", HORIZON, lookback=168, window_scale="seasonal")
    model.fit([v[:-TEST] for v in scaled])
    x = np.stack([v[-TEST - 168 : -TEST] for v in scaled])
    pred = model.predict(x)
    # each window counts by its own shape: 3x + 5 is forecast as 3 * forecast + 5
    np.testing.assert_allclose(model.predict(3.0 * x + 5.0), 3.0 * pred + 5.0, rtol=1e-9)
    offset = build_model("nlinear", HORIZON, lookback=168, window_scale="seasonal",
                         scale_offset=0.03).fit([v[:-TEST] for v in scaled])
    assert not np.allclose(offset.predict(x), pred)  # the offset weighs windows otherwise
    np.testing.assert_allclose(offset.predict(x + 5.0), offset.predict(x) + 5.0, rtol=1e-9)
    plain = build_model("nlinear", HORIZON, lookback=168).fit([v[:-TEST] for v in scaled])
    assert not np.allclose(plain.predict(3.0 * x + 5.0), 3.0 * plain.predict(x) + 5.0)
    model.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    assert loaded.params["window_scale"] == "seasonal"
    np.testing.assert_array_equal(loaded.predict(x), pred)


@pytest.mark.parametrize(("params", "message"), [
    ({"window_scale": "level"}, "window_scale must be 'none' or 'seasonal', got 'level'"),
    ({"window_scale": "seasonal", "lookback": 24},
     "needs 1 <= season < lookback=24, got season 24"),
    ({"window_scale": "seasonal", "season": 0}, "got season 0"),
    ({"window_scale": "seasonal", "scale_offset": -0.1}, "scale_offset must be >= 0, got -0.1"),
])
def test_window_scale_errors_name_the_field(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model("nlinear", HORIZON, **params)


def test_m4_config_parses_with_the_options() -> None:
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" /
                          "m4_hourly.yaml").read_text())
    raw["preprocess"]["target_transform"] = "exp"
    with pytest.raises(Exception, match="target_transform"):
        parse_config(raw)


def test_a_log_bundle_serves_m4_series_and_refuses_zeros(m4: pd.DataFrame) -> None:
    pre, scaled = _scaled(m4, "log")
    model = build_model("nlinear", HORIZON, lookback=168, window_scale="seasonal")
    model.fit([v[: -TEST - 60] for v in scaled])
    model.calibrate(scaled[0][:-TEST], np.arange(600 - TEST - 60, 600 - 2 * TEST + 1))
    bundle = ForecastBundle(pre, model, {})
    history = m4.groupby("unique_id", sort=False).head(600 - TEST)
    out = forecast_frame(bundle, history.groupby("unique_id", sort=False).tail(200), HORIZON)
    assert len(out) == 12 * HORIZON
    assert (out["yhat_lower"] < out["yhat"]).all() and (out["yhat"] < out["yhat_upper"]).all()
    assert (out["yhat_lower"] > 0).all()  # exp of the scaled bounds
    first = pre.series_ids[0]
    direct = pre.inverse_transform_target(
        model.predict(scaled[0][None, 600 - TEST - 168 : 600 - TEST]), [first])[0]
    np.testing.assert_allclose(out[out["unique_id"] == first]["yhat"], direct, rtol=1e-9)
    bad = history[history["unique_id"] == first].tail(200).copy()
    bad.iloc[5, bad.columns.get_loc("y")] = -1.0
    with pytest.raises(ForecastInputError, match=r"data: value at window 0, row 5 is -1; .*log"):
        forecast_frame(bundle, bad, HORIZON)


@pytest.mark.parametrize("policy", ["drop", "fail"])
def test_ingest_leaves_out_or_refuses_series_the_log_cannot_take(
    tmp_path: Path, policy: str
) -> None:
    import yaml

    from pipelines.data.validate import DataValidationError
    from pipelines.workflow import ingest

    frame = pd.read_parquet(M4)
    frame = frame[frame["unique_id"].isin(["H1", "H2", "H3"])]
    frame = frame.groupby("unique_id", sort=False).tail(700).reset_index(drop=True)
    frame.loc[frame.index[frame["unique_id"] == "H2"][[10, 650]], "y"] = [0.0, -3.0]
    frame.to_parquet(tmp_path / "m4.parquet", index=False)
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" /
                          "m4_hourly.yaml").read_text())
    assert cfg["preprocess"]["target_transform"] == "log"
    cfg["data"]["source"]["path"] = str(tmp_path / "m4.parquet")
    cfg["data"]["invalid_series"] = policy
    (tmp_path / "m4.yaml").write_text(yaml.safe_dump(cfg))
    reason = r"'H2': 2 target value\(s\) <= 0 \(preprocess.target_transform: log needs y > 0\)"
    if policy == "fail":
        with pytest.raises(DataValidationError, match=reason):
            ingest(tmp_path / "m4.yaml", tmp_path / "run")
        assert not (tmp_path / "run").exists()
        return
    out = ingest(tmp_path / "m4.yaml", tmp_path / "run")
    assert out["series"] == 2
    report = Path(out["validation"]).read_text()
    assert "2 target value(s) <= 0" in report and '"H2"' in report
