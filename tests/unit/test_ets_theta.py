"""ETS and Theta as local models on real M4 hourly series: one model per series, point
forecasts and intervals at the configured level, saved and loaded with the panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.evaluation import mase_scale
from pipelines.models.base import Forecaster
from pipelines.models.per_series import PerSeries
from pipelines.models.registry import build_model

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
IDS = ["H1", "H150", "H300"]
HORIZON, ROWS = 48, 500


@pytest.fixture(scope="module")
def panel() -> dict[str, np.ndarray]:
    """The last ROWS values of three M4 series, standardised on their training part."""
    data = pd.read_parquet(M4)
    out = {}
    for uid in IDS:
        y = data.loc[data["unique_id"] == uid, "y"].to_numpy(float)[-ROWS:]
        train = y[:-HORIZON]
        out[uid] = (y - train.mean()) / train.std()
    return out


def _mase(model: PerSeries, panel: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    windows = np.stack([y[:-HORIZON] for y in panel.values()])
    actual = np.stack([y[-HORIZON:] for y in panel.values()])
    point, lower, upper = model.predict_intervals(windows, ids=IDS)
    assert point.shape == lower.shape == upper.shape == (len(IDS), HORIZON)
    assert (lower < point).all() and (point < upper).all()
    scales = np.array([[mase_scale(y[:-HORIZON], 24)] for y in panel.values()])
    coverage = np.mean((lower <= actual) & (actual <= upper))
    return float(np.mean(np.abs(actual - point) / scales)), coverage


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("ets", {"trend": "add", "damped": True, "seasonal": "add", "lookback": 336}),
        ("theta", {"deseasonalize": True, "theta": 2.0, "lookback": 336}),
    ],
)
def test_local_model_per_series_beats_seasonal_naive_with_intervals(
    algorithm: str, params: dict[str, object], panel: dict[str, np.ndarray], tmp_path: Path
) -> None:
    train = [y[:-HORIZON] for y in panel.values()]
    model = PerSeries(HORIZON, algorithm=algorithm, level=0.9, **params).fit(train, ids=IDS)
    widths = [model.model(uid).interval_halfwidth for uid in IDS]
    assert all((np.diff(w) >= -1e-9).all() for w in widths)  # uncertainty grows with h
    assert not np.allclose(widths[0], widths[1])  # fitted per series
    mase, coverage = _mase(model, panel)
    naive = PerSeries(HORIZON, algorithm="seasonal_naive").fit(train, ids=IDS)
    naive_mase = np.mean([
        np.mean(np.abs(y[-HORIZON:] - naive.model(uid).predict(y[None, :-HORIZON])[0]))
        / mase_scale(y[:-HORIZON], 24)
        for uid, y in panel.items()
    ])
    assert mase < 1.1 * naive_mase, (algorithm, mase, naive_mase)
    assert coverage >= 0.6, (algorithm, coverage)
    model.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    assert isinstance(loaded, PerSeries) and loaded.name == algorithm
    windows = np.stack([y[:-HORIZON] for y in panel.values()])
    for got, expected in zip(
        loaded.predict_intervals(windows, ids=IDS), model.predict_intervals(windows, ids=IDS),
        strict=True,
    ):
        np.testing.assert_allclose(got, expected)


@pytest.mark.parametrize(
    "params",
    [{"trend": "none", "seasonal": "none"}, {"trend": "add", "damped": False, "seasonal": "add"}],
)
def test_ets_search_space_choices_fit(params: dict[str, object], panel) -> None:
    y = panel["H1"]
    model = build_model("ets", HORIZON, lookback=168, **params).fit(y[:-HORIZON])
    point, lower, upper = model.predict_intervals(y[None, :-HORIZON])
    assert np.isfinite(point).all() and (lower < upper).all()


def test_bad_parameters_name_the_problem() -> None:
    with pytest.raises(ValueError, match="ets trend must be 'none' or 'add'"):
        build_model("ets", HORIZON, trend="mul")
    with pytest.raises(ValueError, match="two seasons"):
        build_model("ets", HORIZON, lookback=30)
    with pytest.raises(ValueError, match="theta method must be one of"):
        build_model("theta", HORIZON, method="multiplicative")
    with pytest.raises(ValueError, match="theta needs at least 336 values, got 100"):
        build_model("theta", HORIZON).fit(np.zeros(100))
