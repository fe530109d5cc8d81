"""The global models' fits within bounded memory: nlinear's ridge summed shard by shard, the
tree models' training rows built a chunk of series at a time and capped by
``max_train_windows``."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from pipelines.models import nlinear, xgboost_model
from pipelines.models.nlinear import NLinearRidge, RidgeSums
from pipelines.models.registry import build_model


def _panel(n_series: int, n: int, seed: int = 3) -> list[np.ndarray]:
    """Daily-cycle series with different phases, levels and noise (scaled-looking values)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return [rng.normal(0, 2) + np.sin(2 * np.pi * (t + 5 * k) / 24) + 0.2 * rng.standard_normal(n)
            for k in range(n_series)]


@pytest.mark.parametrize("blocks", [1, 3, 17])
def test_ridge_sums_over_blocks_equal_one_ridge(blocks: int) -> None:
    rng = np.random.default_rng(0)
    x = 50.0 + rng.standard_normal((600, 12))  # large means: the centring must not lose digits
    y = x[:, :3] @ rng.standard_normal((3, 4)) - 20.0 + 0.1 * rng.standard_normal((600, 4))
    sums = RidgeSums()
    for xs, ys in zip(np.array_split(x, blocks), np.array_split(y, blocks), strict=True):
        sums.add(xs, ys)
    coef, intercept = sums.solve(3.0)
    ridge = Ridge(alpha=3.0).fit(x, y)
    np.testing.assert_allclose(coef, ridge.coef_.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(intercept, ridge.intercept_, rtol=1e-9, atol=1e-9)


def test_ridge_without_rows_says_so() -> None:
    with pytest.raises(ValueError, match="no rows"):
        RidgeSums().solve(1.0)


def test_nlinear_sharded_fit_equals_one_shot_and_holds_one_shard(monkeypatch: Any) -> None:
    panel = _panel(60, 1000)
    params = {"horizon": 24, "lookback": 168, "alpha": 10.0}
    one_shot = NLinearRidge(**params).fit(panel)  # 45,660 windows: one shard
    monkeypatch.setattr(nlinear, "SHARD_WINDOWS", 2048)
    tracemalloc.start()
    sharded = NLinearRidge(**params).fit(panel)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(sharded.coef, one_shot.coef, rtol=0, atol=1e-10)
    np.testing.assert_allclose(sharded.intercept, one_shot.intercept, rtol=0, atol=1e-10)
    windows = 60 * (1000 - 168 - 24 + 1)
    assert peak < windows * 168 * 8 / 3, f"fit peaked at {peak >> 20} MiB"  # all at once: 213


class _Recorder:
    """Wraps a tree model's ``_fit_rows`` to keep the rows it fits on, as one matrix."""

    def __init__(self, model: Any) -> None:
        self.features: np.ndarray | None = None
        self.target: np.ndarray | None = None
        fit_rows = model._fit_rows

        def record(fn: Any, work: list[Any], sizes: list[int]) -> Any:
            self.features, self.target = model.chunk_rows(fn, work)
            return fit_rows(fn, work, sizes)

        model._fit_rows = record


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_capped_rows_are_a_seeded_sample_of_every_window(name: str, monkeypatch: Any) -> None:
    panel = _panel(7, 300)
    params = {"lookback": 48, "n_estimators": 5}
    full = build_model(name, 12, **params)
    everything = _Recorder(full)
    full.fit(panel)
    monkeypatch.setattr(xgboost_model, "CHUNK_SERIES", 2)  # several chunks: the same rows
    capped = build_model(name, 12, max_train_windows=500, **params)
    sample = _Recorder(capped)
    capped.fit(panel)
    assert sample.features.shape == (500, everything.features.shape[1])
    counts = [300 - 48] * 7
    picked = np.concatenate([k + 252 * s for s, k in enumerate(capped.kept_windows(counts, 0))])
    assert len(np.unique(picked)) == 500 and picked.max() < sum(counts)
    np.testing.assert_array_equal(sample.features, everything.features[picked])
    np.testing.assert_array_equal(sample.target, everything.target[picked])
    again = build_model(name, 12, max_train_windows=500, **params)
    windows = np.stack([y[-48:] for y in panel])
    np.testing.assert_array_equal(again.fit(panel).predict(windows), capped.predict(windows))
    other_seed = build_model(name, 12, max_train_windows=500, seed=1, **params)
    assert not all(np.array_equal(a, b) for a, b in zip(
        other_seed.kept_windows(counts, 0), capped.kept_windows(counts, 0), strict=True))


def test_cap_above_the_windows_changes_nothing() -> None:
    panel = _panel(4, 200)
    windows = np.stack([y[-48:] for y in panel])
    params = {"lookback": 48, "n_estimators": 5, "strategy": "direct", "direct_steps": 3}
    free = build_model("lightgbm", 12, **params).fit(panel).predict(windows)
    capped = build_model("lightgbm", 12, max_train_windows=10_000, **params).fit(panel)
    np.testing.assert_array_equal(capped.predict(windows), free)
    assert capped.kept_windows([152] * 4, 1) == [None] * 4


def test_direct_blocks_train_on_the_cap(monkeypatch: Any) -> None:
    panel = _panel(5, 200)
    model = build_model("xgboost", 12, lookback=48, n_estimators=3, strategy="direct",
                        direct_steps=2, max_train_windows=300)
    sizes: list[int] = []
    train = xgboost_model.xgb.train
    monkeypatch.setattr(xgboost_model.xgb, "train", lambda params, data, **kw: (
        sizes.append(data.num_row()), train(params, data, **kw))[1])
    model.fit(panel)
    assert sizes == [300, 300]  # one training set per block, each capped


@pytest.mark.parametrize("bad", [0, -5, 1.5, "1000", True])
def test_bad_cap_names_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match=r"lightgbm: max_train_windows must be a positive"):
        build_model("lightgbm", 12, max_train_windows=bad)
