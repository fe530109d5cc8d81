"""The pyfunc's forecast frame: one forecast per ``unique_id``, each from its own history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.bundle import ForecastBundle, ForecastInputError
from pipelines.config import PreprocessConfig
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor
from pipelines.pyfunc_model import forecast_frame

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"
HORIZON = 6


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    raw = pd.read_csv(ETTH1, nrows=1500)
    return pd.DataFrame({"ds": pd.to_datetime(raw["date"]), "y": raw["OT"].astype(float)})


@pytest.fixture(scope="module")
def bundle(series: pd.DataFrame) -> ForecastBundle:
    train = series.iloc[:1000].assign(unique_id="ETTh1")
    pre = Preprocessor(PreprocessConfig()).fit(train)
    y = pre.transform_target(series["y"].to_numpy(float))
    model = build_model("nlinear", HORIZON, lookback=48).fit(y[:1000])
    model.calibrate(y, np.arange(1000, 1200))
    return ForecastBundle(pre, model, {"series_id": "ETTh1"})


def test_without_unique_id_one_series_named_by_the_bundle(bundle, series):
    out = forecast_frame(bundle, series.iloc[1200:1300], HORIZON)
    assert list(out.columns) == ["unique_id", "ds", "step", "yhat", "yhat_lower", "yhat_upper"]
    assert (out["unique_id"] == "ETTh1").all()
    assert out["step"].tolist() == list(range(1, HORIZON + 1))
    assert out["ds"].iloc[0] == series["ds"].iloc[1300]


def test_each_unique_id_is_forecast_from_its_own_history(bundle, series):
    a, b = series.iloc[1200:1300], series.iloc[1350:1420]
    both = pd.concat([a.assign(unique_id="a"), b.assign(unique_id="b")], ignore_index=True)
    out = forecast_frame(bundle, both, HORIZON)
    assert out["unique_id"].tolist() == ["a"] * HORIZON + ["b"] * HORIZON
    for uid, alone in (("a", a), ("b", b)):
        single = forecast_frame(bundle, alone, HORIZON)
        got = out[out["unique_id"] == uid].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got.drop(columns="unique_id"), single.drop(columns="unique_id")
        )


def test_missing_unique_id_is_refused(bundle, series):
    frame = series.iloc[1200:1300].assign(unique_id="a")
    frame.iloc[7, frame.columns.get_loc("unique_id")] = None
    with pytest.raises(ForecastInputError, match=r"unique_id: missing at row\(s\) \[7\]"):
        forecast_frame(bundle, frame, HORIZON)
