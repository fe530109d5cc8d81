"""The global MLP: a panel of different amplitudes under the window scale, its seed ensemble,
the training-window cap, and the errors that name the bad hyper-parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.models.base import Forecaster
from pipelines.models.registry import build_model

HORIZON, LOOKBACK = 12, 48
PARAMS = {"lookback": LOOKBACK, "units": 32, "layers": 2, "epochs": 4, "batch_size": 64,
          "window_scale": "seasonal", "season": 24}


def _panel(n: int = 400) -> list[np.ndarray]:
    """Daily-seasonal series whose amplitudes differ by 1,000 times (scaled values as models
    see them would not differ so much; this is what the window scale is for)."""
    t = np.arange(n)
    rng = np.random.default_rng(7)
    return [a * (np.sin(2 * np.pi * (t + 3 * k) / 24) + 0.05 * rng.standard_normal(n))
            for k, a in enumerate([0.01, 1.0, 10.0])]


def _windows(panel: list[np.ndarray], end: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([y[end - LOOKBACK : end] for y in panel])
    return x, np.stack([y[end : end + HORIZON] for y in panel])


def test_a_window_scaled_mlp_forecasts_every_amplitude_better_than_the_last_value() -> None:
    panel = _panel()
    model = build_model("mlp", HORIZON, **PARAMS).fit([y[:340] for y in panel])
    x, actual = _windows(panel, 350)
    point = model.predict(x)
    # relative error per series, so the 0.01-amplitude series counts as much as the others
    err = np.abs(point - actual).mean(axis=1) / np.abs(actual).mean(axis=1)
    last = np.abs(x[:, -1:] - actual).mean(axis=1) / np.abs(actual).mean(axis=1)
    assert (err < 0.5 * last).all(), (err, last)


def test_members_average_networks_from_consecutive_seeds(tmp_path: Path) -> None:
    train = [y[:340] for y in _panel()]
    x, _ = _windows(_panel(), 350)
    pair = build_model("mlp", HORIZON, seed=5, members=2, **PARAMS).fit(train)
    one = [build_model("mlp", HORIZON, seed=s, **PARAMS).fit(train).predict(x) for s in (5, 6)]
    np.testing.assert_allclose(pair.predict(x), np.mean(one, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(one[0], one[1])
    pair.calibrate(train[1], np.arange(200, 280))
    pair.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(x), pair.predict(x))


def test_the_training_windows_are_capped_by_a_seeded_draw_over_every_series() -> None:
    train = [y[:340] for y in _panel()]
    model = build_model("mlp", HORIZON, max_windows=100, **PARAMS)
    inputs, targets = model._windows(train, [None] * 3, [None] * 3)
    assert inputs.shape == (100, LOOKBACK) and targets.shape == (100, HORIZON)
    again, _ = build_model("mlp", HORIZON, max_windows=100, **PARAMS)._windows(
        train, [None] * 3, [None] * 3)
    np.testing.assert_array_equal(inputs, again)
    full, _ = build_model("mlp", HORIZON, **PARAMS)._windows(train, [None] * 3, [None] * 3)
    assert len(full) == 3 * (340 - LOOKBACK - HORIZON + 1)


def test_lookbacks_average_a_network_per_input_length(tmp_path: Path) -> None:
    train = [y[:340] for y in _panel()]
    x, _ = _windows(_panel(), 350)
    both = build_model("mlp", HORIZON, seed=5, lookbacks=[36, LOOKBACK], **PARAMS).fit(train)
    assert both.min_history == LOOKBACK and both.net_lookbacks == [36, LOOKBACK]
    one = [build_model("mlp", HORIZON, seed=s, **{**PARAMS, "lookback": lb}).fit(train)
           .predict(x[:, -lb:]) for s, lb in ((5, 36), (6, LOOKBACK))]
    np.testing.assert_allclose(both.predict(x), np.mean(one, axis=0), rtol=1e-5, atol=1e-6)
    both.save(tmp_path / "m")
    np.testing.assert_array_equal(Forecaster.load(tmp_path / "m").predict(x), both.predict(x))


@pytest.mark.parametrize(("params", "match"), [
    ({"lookbacks": []}, r"mlp lookbacks must be positive, got \[\]"),
    ({"window_scale": "seasonal", "season": 24, "lookbacks": [24, 48]},
     r"mlp: window_scale 'seasonal' needs 1 <= season < lookback=24"),
    ({"loss": "huber"}, r"mlp loss must be one of \('mae', 'mse'\), got 'huber'"),
    ({"units": 0}, r"mlp units must be at least 1, got 0"),
    ({"max_windows": 0}, r"mlp max_windows must be at least 1"),
    ({"window_scale": "seasonal", "season": 48, "lookback": 48}, r"mlp: window_scale"),
])
def test_bad_hyper_parameters_name_the_field(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("mlp", HORIZON, **params)


def test_a_panel_too_short_for_one_window_names_the_need() -> None:
    with pytest.raises(ValueError, match=r"lookback\+horizon=60 values in a series, got 50"):
        build_model("mlp", HORIZON, **PARAMS).fit([np.zeros(50), np.ones(40)])
