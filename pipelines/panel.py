"""The prepared panel (each series' values and split) and fitting/forecasting across it.

Global models are fitted once on every series' windows and forecast all windows of all series
in one call; local models (``Forecaster.local``) are fitted per series in a ``PerSeries``.
Values here are scaled per series (``pipelines.preprocess``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import artifact_store
from pipelines.models.base import Forecaster, conformal_halfwidth
from pipelines.models.ensemble import Ensemble, combine
from pipelines.models.per_series import PerSeries
from pipelines.models.registry import build_model, get_model_class


@dataclass
class SeriesData:
    """One prepared series: raw and scaled values, timestamps, and its split as row indices."""

    uid: str
    ds: np.ndarray
    y_raw: np.ndarray
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def train_end(self) -> int:
        return int(self.train[-1]) + 1


def read_prepared(url: str) -> list[SeriesData]:
    """The series of a prepared Parquet object in the artifact store (rows grouped by series,
    in time order)."""
    df = artifact_store.read_parquet(url)
    out = []
    for uid, group in df.groupby("unique_id", sort=False):
        split = group["split"].to_numpy()
        out.append(
            SeriesData(
                uid=str(uid),
                ds=group["ds"].to_numpy("datetime64[ns]"),
                y_raw=group["y"].to_numpy(float),
                y=group["y_scaled"].to_numpy(float),
                train=np.flatnonzero(split == "train"),
                val=np.flatnonzero(split == "val"),
                test=np.flatnonzero(split == "test"),
            )
        )
    return out


def origins(rows: np.ndarray, horizon: int) -> np.ndarray:
    """Stride-1 forecast origins whose whole horizon lies inside ``rows``."""
    return np.arange(rows[0], rows[-1] - horizon + 2)


def fit(
    algorithm: str,
    horizon: int,
    params: dict[str, Any],
    ys: Sequence[np.ndarray],
    dss: Sequence[np.ndarray | None],
    ids: Sequence[str],
) -> Forecaster:
    """A global model fitted on every series, or a ``PerSeries`` of local models."""
    if get_model_class(algorithm).local:
        return PerSeries(horizon, algorithm=algorithm, **params).fit(list(ys), list(dss), ids)
    return build_model(algorithm, horizon, **params).fit(list(ys), list(dss))


def forecast(
    model: Forecaster,
    ys: Sequence[np.ndarray],
    dss: Sequence[np.ndarray | None],
    origins_per_series: Sequence[np.ndarray],
    ids: Sequence[str],
) -> list[np.ndarray]:
    """Point forecasts from each series' origins (index ``o`` uses ``y[:o]``), per series."""
    if isinstance(model, Ensemble):
        parts = [forecast(m, ys, dss, origins_per_series, ids) for m in model.members]
        return [
            combine([p[k][:, : model.horizon] for p in parts], model.combine)
            for k in range(len(ys))
        ]
    if isinstance(model, PerSeries):
        return [
            model.model(uid).forecast_origins(y, o, ds)
            for uid, y, ds, o in zip(ids, ys, dss, origins_per_series, strict=True)
        ]
    width = model.min_history
    windows, last_ds = [], []
    for uid, y, ds, o in zip(ids, ys, dss, origins_per_series, strict=True):
        o = np.asarray(o, dtype=int)
        if o.size and o.min() < width:
            raise ValueError(
                f"series {uid!r}: origin {o.min()} leaves fewer than {width} history values"
            )
        windows.append(sliding_window_view(np.asarray(y, dtype=float), width)[o - width])
        last_ds.append(None if ds is None else np.asarray(ds)[o - 1])
    with_ds = all(d is not None for d in last_ds)
    pred = model.predict(np.concatenate(windows), np.concatenate(last_ds) if with_ds else None)
    return np.split(pred, np.cumsum([len(o) for o in origins_per_series])[:-1])


def calibrate(model: Forecaster, series: Sequence[SeriesData], horizon: int) -> None:
    """Conformal half-widths from the validation windows of every series, pooled (scaled
    values are comparable across series). Models with their own intervals (ARIMA) keep them."""
    ys = [s.y for s in series]
    dss = [s.ds for s in series]
    val_origins = [origins(s.val, horizon) for s in series]
    ids = [s.uid for s in series]
    preds = forecast(model, ys, dss, val_origins, ids)
    errors = np.concatenate(
        [
            np.abs(sliding_window_view(s.y, horizon)[o] - p)
            for s, o, p in zip(series, val_origins, preds, strict=True)
        ]
    )
    pooled = conformal_halfwidth(errors, model.level)
    if isinstance(model, PerSeries):
        for uid in model.ids:
            if model.model(uid).interval_halfwidth is None:
                model.model(uid).interval_halfwidth = pooled
    else:
        model.interval_halfwidth = pooled


def halfwidths(model: Forecaster, ids: Sequence[str]) -> list[np.ndarray]:
    """The interval half-width per step of each series' model."""
    if isinstance(model, PerSeries):
        return [model.model(uid).interval_halfwidth for uid in ids]
    return [model.interval_halfwidth for _ in ids]
