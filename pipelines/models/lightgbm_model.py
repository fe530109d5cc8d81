"""LightGBM on the same lag/rolling/calendar features and strategies as the XGBoost model.

The training rows reach LightGBM as ``lgb.Sequence`` objects that build them when it reads
them, so no float64 matrix of every row is held: LightGBM keeps only its binned rows (about a
byte per feature per row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from pipelines.models.xgboost_model import XGBoostForecaster


class LightGBMForecaster(XGBoostForecaster):
    """LightGBM model: features, target (the change from the last value), damping, the
    recursive roll-out and the ``direct`` strategy are the XGBoost model's; only the booster
    differs.

    Hyper-parameters (defaults): ``lookback`` (168), ``n_estimators`` (200), ``num_leaves``
    (31), ``learning_rate`` (0.05), ``min_data_in_leaf`` (20), ``feature_fraction`` (0.8),
    ``bagging_fraction`` (0.8), ``lambda_l2`` (1.0), ``damping`` (0.99), ``calendar`` (False),
    ``strategy`` (``recursive``), ``direct_steps`` (the horizon), ``max_train_windows`` (none).
    Global: fitted once on the windows of every series. Intervals are conformal.
    """

    name = "lightgbm"
    booster_file = "lightgbm.txt"

    def _lgb_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "regression",
            # one thread: with two, OpenMP's spinning on a busy 2-core machine made a
            # 100-round fit of 4,640 rows take 62 s instead of 2 s (measured here)
            "num_threads": 1,
            "seed": self.seed,
            # named: a Dataset of Sequences samples its rows for binning with the params' value
            # in Python, where ``seed`` alone does not set it
            "data_random_seed": data_random_seed(self.seed),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "num_leaves": int(p.get("num_leaves", 31)),
            "learning_rate": float(p.get("learning_rate", 0.05)),
            "min_data_in_leaf": int(p.get("min_data_in_leaf", 20)),
            "feature_fraction": float(p.get("feature_fraction", 0.8)),
            "bagging_fraction": float(p.get("bagging_fraction", 0.8)),
            "bagging_freq": 1,
            "lambda_l2": float(p.get("lambda_l2", 1.0)),
        }

    def _fit_rows(self, fn: Any, work: list[tuple[Any, ...]], sizes: list[int]) -> Any:
        """The booster fitted on ``fn``'s rows of every work item, read by LightGBM from one
        ``WindowRows`` per chunk (``chunks``); the targets are filled as it reads them."""
        params = self._lgb_params()
        target = np.full(sum(sizes), np.nan)
        seqs, at = [], 0
        for part, part_sizes in self.chunks(work, sizes):
            rows = sum(part_sizes)
            seqs.append(WindowRows(self, fn, part, part_sizes, target[at : at + rows]))
            at += rows
        data = lgb.Dataset(seqs, label=target, params=params).construct()
        if np.isnan(data.get_field("label")).any():  # LightGBM set the label before the rows
            raise RuntimeError(f"{self.name}: training targets were not all built")
        rounds = int(self.params.get("n_estimators", 200))
        return lgb.train(params, data, num_boost_round=rounds)

    def _predict_rows(self, features: np.ndarray, booster: Any) -> np.ndarray:
        return booster.predict(features, num_threads=1)

    def _write_booster(self, booster: Any, file: Path) -> None:
        booster.save_model(str(file))

    def _read_booster(self, file: Path) -> Any:
        return lgb.Booster(model_file=str(file))


def data_random_seed(seed: int) -> int:
    """The ``data_random_seed`` LightGBM derives from ``seed`` (its ``Random(seed)``'s first
    ``NextShort(0, 32767)``), so the rows sampled for binning, and the booster, are those of a
    Dataset built from one matrix with ``seed`` alone."""
    x = (214013 * (seed & 0xFFFFFFFF) + 2531011) & 0xFFFFFFFF
    return ((x >> 16) & 0x7FFF) % 32767


class WindowRows(lgb.Sequence):
    """The float64 training rows of some work items (``sizes[i]`` rows for item ``i``, from
    ``fn(item, model)``), built when LightGBM reads them: a slice from every item's rows (one
    fan-out; its targets are written into ``target``, which LightGBM reads as the label once
    every row is in), a single row (binning's sample) from its item's rows, kept while
    LightGBM samples that item."""

    def __init__(self, model: XGBoostForecaster, fn: Any, work: list[tuple[Any, ...]],
                 sizes: list[int], target: np.ndarray) -> None:  # fmt: skip
        self.model, self.fn, self.work, self.target = model, fn, work, target
        self.bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.batch_size = max(1, len(self))  # one read: one fan-out over every item
        self._item: tuple[int, np.ndarray | None] = (-1, None)

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def __getitem__(self, idx: int | slice) -> np.ndarray:
        if isinstance(idx, slice):
            start, stop, _ = idx.indices(len(self))
            self._item = (-1, None)
            rows, target = self.model.chunk_rows(self.fn, self.work)
            self.target[start:stop] = target[start:stop]
            return rows[start:stop]
        item = int(np.searchsorted(self.bounds, idx, side="right")) - 1
        if self._item[0] != item:
            self._item = (item, self.fn(self.work[item], self.model)[0])
        return self._item[1][idx - self.bounds[item]]
