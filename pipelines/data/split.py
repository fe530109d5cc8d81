"""Chronological train/validation/test row split of one series."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config import ExperimentConfig, SplitConfig


@dataclass(frozen=True)
class Split:
    """Row slices of one series, in time order: train, then val, then test."""

    train: slice
    val: slice
    test: slice


def split_rows(n_rows: int, cfg: SplitConfig, horizon: int | None = None) -> Split:
    """Test is the last ``test_size`` rows, val the ``val_size`` before, train the rest.

    With ``train_size`` set, train is the last ``train_size`` rows before val. With
    ``horizon``, val and test must each hold ``horizon + 1`` rows so forecast windows fit.
    """
    if horizon is not None:
        _check_windows(cfg, horizon)
    train_rows = cfg.train_size or 1
    needed = train_rows + cfg.val_size + cfg.test_size
    if n_rows < needed:
        train_text = f"train_size {cfg.train_size}" if cfg.train_size else "at least 1 train row"
        raise ValueError(
            f"series has {n_rows} rows, too few for the split: {train_text} + "
            f"val_size {cfg.val_size} + test_size {cfg.test_size} = {needed} rows"
        )
    val_start = n_rows - cfg.test_size - cfg.val_size
    train_start = val_start - cfg.train_size if cfg.train_size else 0
    return Split(
        train=slice(train_start, val_start),
        val=slice(val_start, n_rows - cfg.test_size),
        test=slice(n_rows - cfg.test_size, n_rows),
    )


def min_rows_required(cfg: ExperimentConfig, min_history: int) -> int:
    """Rows per series the windows need: training windows plus val_size plus test_size.

    Train must hold ``min_history + horizon + 1`` rows (one full training window and one more
    origin), or ``train_size`` if larger; val and test must each hold ``horizon + 1`` rows.
    """
    if min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {min_history}")
    _check_windows(cfg.split, cfg.horizon)
    train_rows = max(min_history + cfg.horizon + 1, cfg.split.train_size or 0)
    return train_rows + cfg.split.val_size + cfg.split.test_size


def _check_windows(cfg: SplitConfig, horizon: int) -> None:
    """val and test each fit horizon + 1 rows (at least two forecast origins)."""
    small = [
        f"{name} {size}"
        for name, size in (("val_size", cfg.val_size), ("test_size", cfg.test_size))
        if size < horizon + 1
    ]
    if small:
        raise ValueError(
            f"{' and '.join(small)} too small for horizon {horizon}: each needs at least "
            f"horizon + 1 = {horizon + 1} rows so that forecast windows fit"
        )
