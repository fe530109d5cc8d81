"""The LSTM with regressors on a panel whose target moves with a planned promotion (a future
regressor) by a known amount: the model learns the effect and reads the promotion over the
horizon, its bundle (per-series scaling of every column fitted on training rows) saves and
loads to the same forecasts, and a request without the future values is refused naming the
series and the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import panel
from pipelines.bundle import ForecastBundle, ForecastInputError
from pipelines.config import PreprocessConfig
from pipelines.exogenous import ExogSpec, future_matrix
from pipelines.preprocess import Preprocessor

HORIZON, LOOKBACK, ROWS, TRAIN = 12, 24, 600, 500
PARAMS = {"lookback": LOOKBACK, "units": 16, "epochs": 10, "batch_size": 64,
          "learning_rate": 0.01}
SPEC = ExogSpec(historical=("load",), future=("promo",))
# per series: level, daily amplitude, promotion lift (original units), load scale
SERIES = {"a": (10.0, 1.0, 2.0, 1.0), "b": (500.0, 20.0, 40.0, 100.0), "c": (-3.0, 0.5, 1.0, 0.1)}


@pytest.fixture(scope="module")
def data() -> dict:
    """Three hourly series of different scales: daily cycle + lift * promo + noise, with a
    promotion flag on a fifth of the hours (known ahead) and a measured load (historical)."""
    rng = np.random.default_rng(7)
    ds = pd.date_range("2024-01-01", periods=ROWS, freq="h")
    frames = []
    for uid, (level, amp, lift, load_scale) in SERIES.items():
        promo = (rng.random(ROWS) < 0.2).astype(float)
        cycle = np.sin(2 * np.pi * np.arange(ROWS) / 24)
        y = level + amp * (cycle + 0.1 * rng.normal(size=ROWS)) + lift * promo
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y, "promo": promo,
                                    "load": load_scale * rng.normal(size=ROWS)}))
    frame = pd.concat(frames, ignore_index=True)
    pre = Preprocessor(PreprocessConfig()).fit(frame.groupby("unique_id").head(TRAIN))
    scaled = pre.transform(frame)
    groups = [g for _, g in scaled.groupby("unique_id", sort=False)]
    ys = [g["y"].to_numpy() for g in groups]
    dss = [g["ds"].to_numpy() for g in groups]
    xhs = [g[["load"]].to_numpy() for g in groups]
    xfs = [future_matrix(SPEC, g[["promo"]].to_numpy(), g["ds"].to_numpy()) for g in groups]
    ids = list(SERIES)
    fit = {}
    for name, exog in (("plain", (None, None)), ("exog", (xhs, xfs))):
        regs = [None if r is None else [v[:TRAIN] for v in r] for r in exog]
        fit[name] = panel.fit("lstm", HORIZON, {"seed": 3, **PARAMS}, [v[:TRAIN] for v in ys],
                              [t[:TRAIN] for t in dss], ids, *regs)
        fit[name].interval_halfwidth = np.full(HORIZON, 0.1)
    return {"frame": frame, "pre": pre, "ys": ys, "dss": dss, "xhs": xhs, "xfs": xfs,
            "ids": ids, "fit": fit}


def test_the_lstm_learns_the_promotion_and_reads_it_over_the_horizon(data) -> None:
    origins = [np.arange(TRAIN, ROWS - HORIZON)] * len(SERIES)
    actual = np.concatenate([sliding_window_view(y, HORIZON)[o]
                             for y, o in zip(data["ys"], origins, strict=True)])
    model = data["fit"]["exog"]
    assert model.exog_inputs == (1, 1) and model.exog_lags == LOOKBACK
    assert data["fit"]["plain"].exog_inputs == (0, 0)
    plain = panel.forecast(data["fit"]["plain"], data["ys"], data["dss"], origins, data["ids"])
    used = panel.forecast(model, data["ys"], data["dss"], origins, data["ids"], data["xhs"],
                          data["xfs"])
    err_plain = np.abs(np.concatenate(plain) - actual).mean()
    err_used = np.abs(np.concatenate(used) - actual).mean()
    assert err_used < 0.5 * err_plain, (err_used, err_plain)

    # in original units through the bundle: a promotion over the horizon lifts the forecast
    # of series b by about its lift (40), none leaves it at its cycle
    bundle = ForecastBundle(data["pre"], model, {"exogenous": SPEC.to_dict()})
    own = data["frame"][data["frame"]["unique_id"] == "b"].iloc[TRAIN - LOOKBACK:TRAIN]
    args = (own["y"].to_numpy()[None], own["ds"].to_numpy()[-1:], HORIZON, ["b"],
            {"load": own["load"].to_numpy()[None]})
    on = bundle.forecast(*args, {"promo": np.ones((1, HORIZON))}).yhat
    off = bundle.forecast(*args, {"promo": np.zeros((1, HORIZON))}).yhat
    assert 30 < (on - off).mean() < 50, on - off


def test_the_lstm_bundle_saves_its_scaling_and_forecasts_alike_after_loading(
    data, tmp_path: Path
) -> None:
    bundle = ForecastBundle(data["pre"], data["fit"]["exog"], {"exogenous": SPEC.to_dict()})
    loaded = ForecastBundle.load(bundle.save(tmp_path / "bundle"))
    # every regressor scaled per series with its training rows' statistics
    train_b = data["frame"][data["frame"]["unique_id"] == "b"].iloc[:TRAIN]
    assert loaded.preprocessor.series["b"]["load"]["center"] == pytest.approx(
        train_b["load"].mean())
    assert loaded.forecaster.exog_inputs == (1, 1)
    frame = data["frame"]
    hist, ahead = [], []
    for uid in SERIES:
        own = frame[frame["unique_id"] == uid]
        hist.append(own.iloc[540 - 48:540])
        ahead.append(own.iloc[540:540 + HORIZON])
    args = (np.stack([h["y"].to_numpy() for h in hist]),
            np.array([h["ds"].to_numpy()[-1] for h in hist]), HORIZON, list(SERIES),
            {"load": np.stack([h["load"].to_numpy() for h in hist])},
            {"promo": np.stack([a["promo"].to_numpy() for a in ahead])})
    before, after = bundle.forecast(*args), loaded.forecast(*args)
    for field in ("yhat", "lower", "upper"):
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field))


def test_the_lstm_needs_future_values_for_the_whole_horizon(data) -> None:
    bundle = ForecastBundle(data["pre"], data["fit"]["exog"], {"exogenous": SPEC.to_dict()})
    own = data["frame"][data["frame"]["unique_id"] == "c"].iloc[TRAIN - LOOKBACK:TRAIN]
    args = (own["y"].to_numpy()[None], own["ds"].to_numpy()[-1:], HORIZON, ["c"],
            {"load": own["load"].to_numpy()[None]})
    with pytest.raises(ForecastInputError, match=r"future_exog\.promo: series 'c': regressor "
                                                 r"'promo' is missing; this model needs future"):
        bundle.forecast(*args, None)
    with pytest.raises(ForecastInputError, match=r"future_exog\.promo: series 'c': regressor "
                                                 r"'promo' has 5 values; this model needs at "
                                                 r"least 12 future values"):
        bundle.forecast(*args, {"promo": np.ones((1, 5))})
    with pytest.raises(ForecastInputError, match=r"exog\.load: series 'c': regressor 'load' "
                                                 r"is missing"):
        bundle.forecast(*args[:4], None, {"promo": np.ones((1, HORIZON))})
