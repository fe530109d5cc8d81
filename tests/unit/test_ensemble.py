"""The ensemble forecaster: combining members (local and global), saving and loading, config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines import panel
from pipelines.config import load_config
from pipelines.models.base import Forecaster
from pipelines.models.ensemble import Ensemble

REPO = Path(__file__).resolve().parents[2]
IDS = ["a", "b"]


def _members(horizon: int = 12) -> tuple[list[Forecaster], list[np.ndarray]]:
    t = np.arange(400)
    rng = np.random.default_rng(5)
    ys = [np.sin(2 * np.pi * (t + 7 * k) / 24) + 0.2 * rng.standard_normal(400) for k in (0, 1)]
    train = [y[:300] for y in ys]
    naive = panel.fit("seasonal_naive", horizon, {"season": 24}, train, [None, None], IDS)
    ets = panel.fit("ets", horizon, {"lookback": 96}, train, [None, None], IDS)
    linear = panel.fit("nlinear", horizon, {"lookback": 48}, train, [None, None], IDS)
    return [naive, ets, linear], ys


@pytest.mark.parametrize("how", ["mean", "median"])
def test_combines_members_in_serving_and_evaluation_alike(how: str, tmp_path: Path) -> None:
    members, ys = _members()
    model = Ensemble(12, members, combine=how, level=0.8)
    assert model.min_history == 96
    origins = [np.array([300, 320]), np.array([310])]
    evaluated = panel.forecast(model, ys, [None, None], origins, IDS)
    windows = np.stack([ys[0][300 - 96 : 300], ys[0][320 - 96 : 320], ys[1][310 - 96 : 310]])
    served = model.predict(windows, ids=["a", "a", "b"])
    np.testing.assert_allclose(served, np.concatenate(evaluated), atol=1e-9)
    each = [m.predict(windows, ids=["a", "a", "b"]) if m.local else m.predict(windows)
            for m in members]
    expected = np.mean(each, axis=0) if how == "mean" else np.median(each, axis=0)
    np.testing.assert_allclose(served, expected)

    series = [panel.SeriesData(uid, np.arange(400), y, y, np.arange(300), np.arange(300, 350),
                               np.arange(350, 400)) for uid, y in zip(IDS, ys, strict=True)]
    panel.calibrate(model, series, 12)  # conformal on the ensemble's own validation errors
    assert model.interval_halfwidth.shape == (12,)
    point, lower, upper = model.predict_intervals(windows, ids=["a", "a", "b"])
    np.testing.assert_allclose(upper - point, np.broadcast_to(model.interval_halfwidth, (3, 12)))
    model.save(tmp_path / "ens")
    loaded = Forecaster.load(tmp_path / "ens")
    assert isinstance(loaded, Ensemble) and loaded.combine == how
    assert [m.name for m in loaded.members] == ["seasonal_naive", "ets", "nlinear"]
    for got, want in zip(loaded.predict_intervals(windows, ids=["a", "a", "b"]),
                         (point, lower, upper), strict=True):
        np.testing.assert_allclose(got, want)


def test_bad_combine_is_named() -> None:
    members, _ = _members()
    with pytest.raises(ValueError, match="ensemble combine must be one of"):
        Ensemble(12, members, combine="max")
    with pytest.raises(ValueError, match="forecast fewer than 24 steps"):
        Ensemble(24, members)


def test_ensemble_is_off_for_etth1_and_on_for_m4() -> None:
    assert not load_config(REPO / "configs" / "etth1.yaml").ensemble.enabled
    m4 = load_config(REPO / "configs" / "m4_hourly.yaml").ensemble
    assert m4.enabled and m4.top_k == 3 and m4.combine == "mean"
