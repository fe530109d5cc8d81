"""The prepared panel (each series' values and split) and fitting/forecasting across it.

Global models are fitted once on every series' windows and forecast all windows of all series
in one call; local models (``Forecaster.local``) are fitted per series in a ``PerSeries`` and
forecast series by series (with the Ray engine, ``pipelines.engine``, one task per series).
Values here are scaled per series (``pipelines.preprocess``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import artifact_store, engine
from pipelines.exogenous import ExogSpec, future_matrix, future_windows, history_windows
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
    xh: np.ndarray | None = None
    xf: np.ndarray | None = None

    @property
    def train_end(self) -> int:
        return int(self.train[-1]) + 1


EXOG_PREFIX = "exog:"
"""Prepared columns of the scaled regressors: ``exog:<source column>``."""


def read_prepared(url: str, spec: ExogSpec | None = None) -> list[SeriesData]:
    """The series of a prepared Parquet object in the artifact store (rows grouped by series,
    in time order), with the regressors of ``spec`` (``xh``, ``xf``) when given. Each series'
    values are slices of the file's columns (one array per column, not one per series)."""
    df = artifact_store.read_parquet(url)
    spec = spec or ExogSpec()
    codes, uids = pd.factorize(df["unique_id"])
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1, [len(df)]])
    if len(bounds) - 1 != len(uids):
        raise ValueError(f"prepared panel {url}: rows are not grouped by series")
    split = df["split"].to_numpy()
    parts = {name: split == name for name in ("train", "val", "test")}
    ds = df["ds"].to_numpy("datetime64[ns]")
    y_raw, y = df["y"].to_numpy(float), df["y_scaled"].to_numpy(float)
    hist = [EXOG_PREFIX + c for c in spec.historical]
    xh = df[hist].to_numpy(float) if hist else None
    xf = df[[EXOG_PREFIX + c for c in spec.future]].to_numpy(float)
    del df, split
    out = []
    for uid, a, b in zip(uids, bounds[:-1], bounds[1:], strict=True):
        out.append(
            SeriesData(
                uid=str(uid),
                ds=ds[a:b],
                y_raw=y_raw[a:b],
                y=y[a:b],
                train=np.flatnonzero(parts["train"][a:b]),
                val=np.flatnonzero(parts["val"][a:b]),
                test=np.flatnonzero(parts["test"][a:b]),
                xh=None if xh is None else xh[a:b],
                xf=future_matrix(spec, xf[a:b], ds[a:b]),
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
    xhs: Sequence[np.ndarray] | None = None,
    xfs: Sequence[np.ndarray] | None = None,
) -> Forecaster:
    """A global model fitted on every series, or a ``PerSeries`` of local models. Models that
    use regressors get ``xhs``/``xfs`` (one array per series); the others ignore them."""
    model_cls = get_model_class(algorithm)
    if model_cls.local:
        return PerSeries(horizon, algorithm=algorithm, **params).fit(list(ys), list(dss), ids)
    model = build_model(algorithm, horizon, **params)
    if model_cls.uses_exog and (xhs is not None or xfs is not None):
        return model.fit(list(ys), list(dss), xh=xhs, xf=xfs)
    return model.fit(list(ys), list(dss))


def forecast(
    model: Forecaster,
    ys: Sequence[np.ndarray],
    dss: Sequence[np.ndarray | None],
    origins_per_series: Sequence[np.ndarray],
    ids: Sequence[str],
    xhs: Sequence[np.ndarray | None] | None = None,
    xfs: Sequence[np.ndarray | None] | None = None,
) -> list[np.ndarray]:
    """Point forecasts from each series' origins (index ``o`` uses ``y[:o]``, and the future
    regressors of rows ``o .. o + horizon - 1``), per series."""
    if isinstance(model, Ensemble):
        parts = [forecast(m, ys, dss, origins_per_series, ids, xhs, xfs) for m in model.members]
        return [
            combine([p[k][:, : model.horizon] for p in parts], model.combine, model.weights)
            for k in range(len(ys))
        ]
    if isinstance(model, PerSeries):  # each series' backtest a task with the Ray engine
        work = [(model.model(uid), y, o, ds)
                for uid, y, ds, o in zip(ids, ys, dss, origins_per_series, strict=True)]
        return engine.fan_out(_forecast_origins, work)
    width = model.min_history
    k_h, k_f = model.exog_inputs
    xhs = xhs if xhs is not None else [None] * len(ys)
    xfs = xfs if xfs is not None else [None] * len(ys)
    windows, last_ds, hist, fut = [], [], [], []
    for uid, y, ds, o, xh, xf in zip(ids, ys, dss, origins_per_series, xhs, xfs, strict=True):
        o = np.asarray(o, dtype=int)
        if o.size and o.min() < width:
            raise ValueError(
                f"series {uid!r}: origin {o.min()} leaves fewer than {width} history values"
            )
        windows.append(sliding_window_view(np.asarray(y, dtype=float), width)[o - width])
        last_ds.append(None if ds is None else np.asarray(ds)[o - 1])
        if k_h:
            hist.append(history_windows(xh, o, model.exog_lags))
        if k_f:
            fut.append(future_windows(xf, o, model.horizon))
    with_ds = all(d is not None for d in last_ds)
    exog = {"xh": np.concatenate(hist) if k_h else None,
            "xf": np.concatenate(fut) if k_f else None} if k_h or k_f else {}
    pred = model.predict(
        np.concatenate(windows), np.concatenate(last_ds) if with_ds else None, **exog
    )
    return np.split(pred, np.cumsum([len(o) for o in origins_per_series])[:-1])


def _forecast_origins(item: tuple[Forecaster, np.ndarray, np.ndarray, Any], _shared: None
                      ) -> np.ndarray:  # fmt: skip
    model, y, o, ds = item
    return model.forecast_origins(y, o, ds)


def calibrate(model: Forecaster, series: Sequence[SeriesData], horizon: int) -> None:
    """Conformal half-widths from the validation windows of every series, pooled (scaled
    values are comparable across series). Models with their own intervals (ARIMA) keep them."""
    ys = [s.y for s in series]
    dss = [s.ds for s in series]
    val_origins = [origins(s.val, horizon) for s in series]
    ids = [s.uid for s in series]
    preds = forecast(model, ys, dss, val_origins, ids, [s.xh for s in series],
                     [s.xf for s in series])
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


def copy_calibration(source: Forecaster, target: Forecaster, ids: Sequence[str]) -> None:
    """``source``'s interval half-widths (``calibrate``) where ``target``, the same model
    refitted, has none of its own (its ARIMA keeps the intervals of its refit)."""
    if isinstance(target, PerSeries):
        for uid, width in zip(ids, halfwidths(source, ids), strict=True):
            if target.model(uid).interval_halfwidth is None:
                target.model(uid).interval_halfwidth = width
    elif target.interval_halfwidth is None:
        target.interval_halfwidth = source.interval_halfwidth


def halfwidths(model: Forecaster, ids: Sequence[str]) -> list[np.ndarray]:
    """The interval half-width per step of each series' model."""
    if isinstance(model, PerSeries):
        return [model.model(uid).interval_halfwidth for uid in ids]
    return [model.interval_halfwidth for _ in ids]
