"""The ensemble forecaster: combining members (local and global), saving and loading, config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines import evaluation, panel
from pipelines.config import EnsembleConfig, load_config
from pipelines.models.base import Forecaster
from pipelines.models.ensemble import Ensemble, cross_fit, first_halves, greedy_weights

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


def test_greedy_weights_never_score_worse_than_the_best_member_and_round_trip(
    tmp_path: Path,
) -> None:
    members, ys = _members()
    origins = [np.arange(300, 338), np.arange(300, 338)]  # 38 validation windows per series
    actual = np.concatenate([np.lib.stride_tricks.sliding_window_view(y, 12)[o]
                             for y, o in zip(ys, origins, strict=True)])
    forecasts = [np.concatenate(panel.forecast(m, ys, [None, None], origins, IDS))
                 for m in members]

    def score(point: np.ndarray) -> float:
        return evaluation.mae(actual, point)

    for rounds in (1, 3, 10):
        weights = greedy_weights(forecasts, score, rounds)
        assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
        assert np.allclose(weights * rounds, np.round(weights * rounds))  # counts / size
        combined = np.tensordot(weights, np.stack(forecasts), axes=1)
        assert score(combined) <= min(score(f) for f in forecasts) + 1e-12
    # errors of opposite sign cancel: equal weights on the two biased forecasts, none on the third
    truth = actual[:, :1]
    biased = [truth + 1.0, truth - 1.0, truth + 3.0]
    even = greedy_weights(biased, lambda p: evaluation.mae(truth, p), 4)
    np.testing.assert_allclose(even, [0.5, 0.5, 0.0])

    kept = members[1:]  # a two-member weighted ensemble (local ETS, global NLinear)
    model = Ensemble(12, kept, combine="weighted", weights=[0.25, 0.75], level=0.8)
    assert model.params["weights"] == [0.25, 0.75]
    evaluated = np.concatenate(panel.forecast(model, ys, [None, None], origins, IDS))
    np.testing.assert_allclose(evaluated, 0.25 * forecasts[1] + 0.75 * forecasts[2], atol=1e-12)
    model.interval_halfwidth = np.full(12, 0.3)
    model.save(tmp_path / "ens")
    loaded = Forecaster.load(tmp_path / "ens")
    assert loaded.combine == "weighted" and loaded.weights == model.weights
    np.testing.assert_allclose(
        np.concatenate(panel.forecast(loaded, ys, [None, None], origins, IDS)), evaluated
    )


def test_first_halves_split_each_series_by_origin() -> None:
    np.testing.assert_array_equal(
        first_halves([4, 5, 1]),
        [True, True, False, False, True, True, False, False, False, False])


def test_cross_fitting_scores_each_half_with_the_other_halfs_weights() -> None:
    # two series, two windows each (3 steps, truth 0): member a is 1 then 2, b is -1 then 1
    truth = np.zeros((4, 3))
    a = np.array([1.0, 2.0, 1.0, 2.0])[:, None] * np.ones(3)
    b = np.array([-1.0, 1.0, -1.0, 1.0])[:, None] * np.ones(3)
    first = first_halves([2, 2])

    def mae(point: np.ndarray, rows: np.ndarray) -> float:
        return evaluation.mae(truth[rows], point)

    # in sample: a and b cancel to MAE 0.75 on every window, better than b alone (1.0) ...
    every = np.ones(4, dtype=bool)
    weights = greedy_weights([a, b], lambda p: mae(p, every), 2)
    np.testing.assert_allclose(weights, [0.5, 0.5])
    assert mae(0.5 * a + 0.5 * b, every) == pytest.approx(0.75)
    # ... but the first half's weights (0.5, 0.5: errors 1 and -1 cancel) forecast the second
    # half 1.5, and the second half's (b alone: error 1 beats 2) forecast the first -1
    out, w_first, w_second = cross_fit([a, b], first, mae, 2)
    np.testing.assert_allclose(w_first, [0.5, 0.5])
    np.testing.assert_allclose(w_second, [0.0, 1.0])
    np.testing.assert_allclose(out[:, 0], [-1.0, 1.5, -1.0, 1.5])
    assert mae(out, every) == pytest.approx(1.25)  # worse than b alone: b would be selected
    with pytest.raises(ValueError, match="windows in both halves"):
        cross_fit([a, b], np.ones(4, dtype=bool), mae, 2)


def test_a_halfs_cross_fitted_forecasts_do_not_depend_on_its_own_actuals() -> None:
    members, ys = _members()
    origins = [np.arange(300, 338), np.arange(300, 338)]  # 38 validation windows per series
    actual = np.concatenate([np.lib.stride_tricks.sliding_window_view(y, 12)[o]
                             for y, o in zip(ys, origins, strict=True)])
    forecasts = [np.concatenate(panel.forecast(m, ys, [None, None], origins, IDS))
                 for m in members]
    first = first_halves([38, 38])

    def scorer(truth: np.ndarray):
        return lambda point, rows: evaluation.mae(truth[rows], point)

    out, w_first, w_second = cross_fit(forecasts, first, scorer(actual), 10)
    for w, rows in ((w_first, ~first), (w_second, first)):  # each half, the other's weights
        np.testing.assert_allclose(out[rows], np.tensordot(w, np.stack(forecasts)[:, rows], 1))
    shifted = actual + np.where(first, 0.0, 0.8)[:, None]  # the second half's actuals moved
    moved, w_first_moved, w_second_moved = cross_fit(forecasts, first, scorer(shifted), 10)
    np.testing.assert_array_equal(w_first_moved, w_first)
    np.testing.assert_array_equal(moved[~first], out[~first])  # forecast as before
    assert not np.array_equal(w_second_moved, w_second)  # its own weights did move


def test_a_weighted_ensemble_with_one_validation_window_is_refused_before_training(
    tmp_path: Path,
) -> None:
    from pipelines.config import ConfigError
    from pipelines.workflow import _check_cross_fit, ingest

    config = REPO / "configs" / "m4_hourly.yaml"  # val_size 144: 97 windows of 48
    with pytest.raises(ConfigError, match=r"split.val_size: 144 gives 1 validation window.*"
                                          r"at least 145 \(or ensemble.combine: mean or median"):
        ingest(config, tmp_path / "run", horizon=144)
    assert not (tmp_path / "run").exists()
    _check_cross_fit(load_config(config).with_overrides(horizon=144, algorithms=["nlinear"]))
    _check_cross_fit(load_config(config).with_overrides(horizon=143))  # 2 windows


def test_bad_weights_and_rounds_are_named() -> None:
    members, _ = _members()
    with pytest.raises(ValueError, match="3 non-negative numbers summing to 1"):
        Ensemble(12, members, combine="weighted", weights=[0.5, 0.6, -0.1])
    with pytest.raises(ValueError, match="weights go with combine 'weighted'"):
        Ensemble(12, members, combine="weighted")
    with pytest.raises(ValidationError, match=r"rounds\n.*greater than or equal to 1"):
        EnsembleConfig(combine="weighted", rounds=0)
    with pytest.raises(ValidationError, match=r"combine\n.*'mean', 'median' or 'weighted'"):
        EnsembleConfig(combine="best")
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        greedy_weights([np.zeros(3)], lambda p: 0.0, 0)


def test_ensemble_is_off_for_etth1_and_on_for_m4() -> None:
    assert not load_config(REPO / "configs" / "etth1.yaml").ensemble.enabled
    m4 = load_config(REPO / "configs" / "m4_hourly.yaml").ensemble
    assert m4.enabled and m4.top_k == 3 and m4.combine == "weighted" and m4.rounds == 10
