"""Exogenous regressors: what a model was trained with, and the arrays its features come from.

A run declares regressors in ``data.exogenous`` (``pipelines.config.ExogenousConfig``):
*historical* source columns (known up to the forecast origin), *future* source columns (known
over the horizon) and *calendar* terms (future regressors computed from the timestamps). Models
see them scaled per series (``pipelines.preprocess``) as two arrays per series:

- ``xh``: ``(n, k_h)``, the historical columns, row ``t`` beside ``y[t]``;
- ``xf``: ``(n, k_f)``, the future columns then the calendar terms (sin and cos of each).

Numpy only: serving imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CALENDAR_PERIODS = {"hour_of_day": 24, "day_of_week": 7}
"""Calendar terms and their period; each enters as sin and cos of its phase."""


@dataclass(frozen=True)
class ExogSpec:
    """The regressors of a run (or of a bundle whose model uses them)."""

    historical: tuple[str, ...] = ()
    future: tuple[str, ...] = ()
    calendar: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.historical or self.future or self.calendar)

    @property
    def n_future(self) -> int:
        """Columns of ``xf``: the future source columns and two per calendar term."""
        return len(self.future) + 2 * len(self.calendar)

    def to_dict(self) -> dict[str, list[str]]:
        return {"historical": list(self.historical), "future": list(self.future),
                "calendar": list(self.calendar)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExogSpec:
        data = data or {}
        return cls(*(tuple(data.get(k) or ()) for k in ("historical", "future", "calendar")))

    @classmethod
    def from_config(cls, cfg: Any) -> ExogSpec:
        """From a ``DataConfig``'s ``exogenous`` declaration."""
        ex = cfg.exogenous
        return cls(tuple(ex.historical), tuple(ex.future), tuple(ex.calendar))


def calendar_matrix(ds: np.ndarray, terms: tuple[str, ...] | list[str]) -> np.ndarray:
    """Sin and cos of each calendar term at each timestamp, shape ``(*ds.shape, 2 * terms)``."""
    ts = np.asarray(ds, dtype="datetime64[ns]")
    days = ts.astype("datetime64[D]")
    phase = {
        "hour_of_day": (ts - days) / np.timedelta64(1, "h"),
        "day_of_week": ((days.astype(np.int64) + 3) % 7).astype(float),  # 1970-01-01: Thursday
    }
    columns = []
    for term in terms:
        angle = 2 * np.pi * phase[term] / CALENDAR_PERIODS[term]
        columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=-1) if columns else np.zeros((*ts.shape, 0))


def future_matrix(spec: ExogSpec, future: np.ndarray | None, ds: np.ndarray) -> np.ndarray | None:
    """``xf``: the scaled future columns ``(..., len(spec.future))`` beside the calendar terms
    of ``ds`` (same leading shape); None when the spec has no future regressors."""
    if not spec.n_future:
        return None
    parts = [] if not spec.future else [np.asarray(future, dtype=float)]
    if spec.calendar:
        parts.append(calendar_matrix(ds, spec.calendar))
    return np.concatenate(parts, axis=-1)


def history_windows(xh: np.ndarray, origins: np.ndarray, lags: int) -> np.ndarray:
    """The ``lags`` rows of ``xh`` before each origin, shape ``(len(origins), lags, k)``."""
    view = sliding_window_view(np.asarray(xh, dtype=float), lags, axis=0)  # (n-lags+1, k, lags)
    return view[np.asarray(origins, dtype=int) - lags].transpose(0, 2, 1)


def future_windows(xf: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The ``horizon`` rows of ``xf`` from each origin, shape ``(len(origins), horizon, k)``."""
    view = sliding_window_view(np.asarray(xf, dtype=float), horizon, axis=0)
    return view[np.asarray(origins, dtype=int)].transpose(0, 2, 1)
