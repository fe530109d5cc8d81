"""Chronological train/validation/test split of each series of a long frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import ExperimentConfig, SplitConfig

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Row slices of one series, in time order: train, then val, then test."""

    train: slice
    val: slice
    test: slice


def split_rows(n_rows: int, cfg: SplitConfig, horizon: int | None = None) -> Split:
    """Test is the last ``test_size`` rows, val the ``val_size`` before, train the rest.

    With ``train_size`` set, train is the last ``train_size`` rows before val. With
    ``horizon``, val and test must each hold ``horizon`` rows so a forecast window fits.
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
    origin), or ``train_size`` if larger; val and test must each hold ``horizon`` rows.
    """
    if min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {min_history}")
    _check_windows(cfg.split, cfg.horizon)
    train_rows = max(min_history + cfg.horizon + 1, cfg.split.train_size or 0)
    return train_rows + cfg.split.val_size + cfg.split.test_size


def _check_windows(cfg: SplitConfig, horizon: int) -> None:
    """val and test each fit one forecast window of ``horizon`` rows."""
    small = [
        f"{name} {size}"
        for name, size in (("val_size", cfg.val_size), ("test_size", cfg.test_size))
        if size < horizon
    ]
    if small:
        raise ValueError(
            f"{' and '.join(small)} too small for horizon {horizon}: each needs at least "
            f"horizon = {horizon} rows so that a forecast window fits"
        )


def split_labels(df: pd.DataFrame, cfg: SplitConfig, freq: str) -> np.ndarray:
    """``train``/``val``/``test``/``unused`` for each row of a long frame.

    Rows of each series must be in time order (``validate`` guarantees it). With
    ``align: per_series`` each series' last ``test_size`` rows are test and the ``val_size``
    before are validation; with ``align: common`` the cuts are the same timestamps for every
    series, counted back from the last timestamp of the panel. ``train_size`` keeps only the
    last rows before validation of each series for training.
    """
    uid = df["unique_id"].to_numpy()
    group = pd.Series(uid).groupby(uid, sort=False)
    # an object array of three shared strings: np.full or a cast from fixed-width strings
    # would make one string object per row (about 50 bytes each)
    labels = np.empty(len(df), dtype=object)
    labels.fill("train")
    if cfg.align == "per_series":
        from_end = (group.cumcount(ascending=False)).to_numpy()
        labels[from_end < cfg.test_size + cfg.val_size] = "val"
        labels[from_end < cfg.test_size] = "test"
    else:
        from pandas.tseries.frequencies import to_offset

        ds = pd.to_datetime(df["ds"]).reset_index(drop=True)
        offset = to_offset(freq)
        test_start = ds.max() - (cfg.test_size - 1) * offset
        val_start = test_start - cfg.val_size * offset
        labels[(ds >= val_start).to_numpy()] = "val"
        labels[(ds >= test_start).to_numpy()] = "test"
    if cfg.train_size is not None:
        is_train = pd.Series(labels == "train")
        train_from_end = is_train[::-1].groupby(uid[::-1], sort=False).cumsum()[::-1].to_numpy()
        labels[(labels == "train") & (train_from_end > cfg.train_size)] = "unused"
    return labels


def split_problems(
    df: pd.DataFrame, labels: np.ndarray, cfg: ExperimentConfig, min_history: int
) -> dict[str, str]:
    """Series whose parts are too small for the configured windows: id -> the reason."""
    codes, uniques = pd.factorize(df["unique_id"].to_numpy())
    order = np.argsort(uniques, kind="stable")  # series by id, as a crosstab lists them
    counts = pd.DataFrame(
        {part: np.bincount(codes[labels == part], minlength=len(uniques))[order]
         for part in PARTS},
        index=uniques[order],
    )  # fmt: skip
    need_train = max(min_history + cfg.horizon + 1, cfg.split.train_size or 0)
    need = {"train": need_train, "val": cfg.horizon, "test": cfg.horizon}
    problems = {}
    short_any = np.any([counts[part].to_numpy() < need[part] for part in PARTS], axis=0)
    for uid, row in counts[short_any].iterrows():
        short = [f"{part} {row[part]} < {need[part]}" for part in PARTS if row[part] < need[part]]
        if short:
            problems[str(uid)] = (
                f"too few rows after the {cfg.split.align} split ({', '.join(short)} needed "
                "by the horizon and the models' history)"
            )
    return problems
