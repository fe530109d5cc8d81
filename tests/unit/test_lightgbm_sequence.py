"""LightGBM reads its training rows from ``lgb.Sequence`` objects built on demand: the fitted
booster is the one a single float64 matrix of the same rows gives, also when the panel has
more rows than LightGBM samples to find its bins."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from pipelines.models import xgboost_model
from pipelines.models.lightgbm_model import LightGBMForecaster, WindowRows
from pipelines.models.xgboost_model import _series_rows

LOOKBACK, SAMPLED = 24, 200_000  # LightGBM's default bin_construct_sample_cnt


def _panel(series: int, length: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(length)
    return [np.sin(2 * np.pi * (t + k) / 24) * (1 + k % 5) + rng.normal(0, 0.3, length)
            for k in range(series)]  # fmt: skip


def _matrix_booster(model: LightGBMForecaster, panel: list[np.ndarray]) -> lgb.Booster:
    """The booster from one float64 matrix of every training row and ``seed`` alone (the
    former path)."""
    work = [(v, None, None, None, None, None) for v in panel]
    features, target = model.chunk_rows(_series_rows, work)
    rounds = int(model.params["n_estimators"])
    params = {k: v for k, v in model._lgb_params().items() if k != "data_random_seed"}
    return lgb.train(params, lgb.Dataset(features, label=target), rounds)


def test_sequence_rows_fit_the_booster_of_one_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xgboost_model, "CHUNK_SERIES", 64)  # several Sequences
    panel = _panel(300, 24 * 30 + LOOKBACK)
    assert sum(len(v) - LOOKBACK for v in panel) > SAMPLED  # binning samples rows
    model = LightGBMForecaster(12, lookback=LOOKBACK, n_estimators=15, num_leaves=8, seed=42)
    model.fit(panel)
    reference = _matrix_booster(LightGBMForecaster(12, seed=42, **model.params), panel)
    assert model.booster.model_to_string() == reference.model_to_string()


def test_window_rows_reads_single_rows_and_slices() -> None:
    panel = _panel(5, 60)
    model = LightGBMForecaster(6, lookback=LOOKBACK)
    work = [(v, None, None, None, None, None) for v in panel]
    sizes = [len(v) - LOOKBACK for v in panel]
    target = np.full(sum(sizes), np.nan)
    rows = WindowRows(model, _series_rows, work, sizes, target)
    features, changes = model.chunk_rows(_series_rows, work)
    assert len(rows) == len(features) and rows.batch_size == len(features)
    for i in (0, sizes[0] - 1, sizes[0], len(features) - 1):
        np.testing.assert_array_equal(rows[i], features[i])
    np.testing.assert_array_equal(rows[0 : len(rows)], features)
    np.testing.assert_array_equal(target, changes)
