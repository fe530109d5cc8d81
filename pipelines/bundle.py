"""The forecast bundle: fitted preprocessor + forecaster + metadata, saved as one folder.

This is what a registered MLflow model carries (``artifacts/bundle``) and what serving loads,
so training and serving apply the very same preprocessing (no training/serving skew).

Layout::

    bundle/
      bundle.json         algorithm, horizon, level, freq, min_history, series, lineage,
                          exogenous (the regressors the model uses, ``pipelines.exogenous``)
      preprocessor.json   pipelines.preprocess.Preprocessor
      forecaster/         pipelines.models.base.Forecaster.save
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.exogenous import ExogSpec, future_matrix
from pipelines.models.base import Forecaster
from pipelines.preprocess import Preprocessor, UnknownSeriesError


class ForecastInputError(ValueError):
    """A request the bundle cannot forecast from; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class Forecast:
    """Forecasts in original units, each array ``(n_windows, horizon)``."""

    ds: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class ForecastBundle:
    preprocessor: Preprocessor
    forecaster: Forecaster
    meta: dict[str, Any]

    @property
    def horizon(self) -> int:
        return self.forecaster.horizon

    @property
    def min_history(self) -> int:
        return self.forecaster.min_history

    @property
    def freq(self) -> str:
        return self.forecaster.freq

    @property
    def exogenous(self) -> ExogSpec:
        """The regressors a request must carry (none when the model uses none)."""
        return ExogSpec.from_dict(self.meta.get("exogenous"))

    @property
    def series_ids(self) -> list[str]:
        """The series this model was trained on (any id is served by a one-series model)."""
        return self.preprocessor.series_ids

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            **self.meta,
            "algorithm": self.forecaster.name,
            "horizon": self.horizon,
            "level": self.forecaster.level,
            "freq": self.freq,
            "min_history": self.min_history,
        }
        (path / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        self.preprocessor.save(path / "preprocessor.json")
        self.forecaster.save(path / "forecaster")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForecastBundle:
        path = Path(path)
        if not (path / "bundle.json").exists():
            raise FileNotFoundError(f"no forecast bundle at {path} (bundle.json missing)")
        meta = json.loads((path / "bundle.json").read_text())
        return cls(
            Preprocessor.load(path / "preprocessor.json"),
            Forecaster.load(path / "forecaster"),
            meta,
        )

    def forecast(
        self,
        values: np.ndarray,
        last_ds: np.ndarray,
        horizon: int | None = None,
        ids: Any = None,
        exog: dict[str, np.ndarray] | None = None,
        future: dict[str, np.ndarray] | None = None,
    ) -> Forecast:
        """Forecast ``horizon`` steps after each history window.

        ``values``: ``(n_windows, L)`` or ``(L,)`` history in original units, oldest first;
        ``last_ds``: the timestamp of each window's last value; ``ids``: the series id of each
        window (needed when the model was trained on several series). ``exog``: each
        historical regressor's values beside the history, ``(n_windows, L)``; ``future``: each
        future regressor's values over the forecast steps, ``(n_windows, >= horizon)`` (both
        in original units, required when the model uses them). Raises ForecastInputError.
        """
        horizon = self.horizon if horizon is None else int(horizon)
        if not 1 <= horizon <= self.horizon:
            raise ForecastInputError(
                "forecast_horizon", f"must be between 1 and {self.horizon}, got {horizon}"
            )
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if values.shape[1] < self.min_history:
            raise ForecastInputError(
                "data",
                f"history has {values.shape[1]} values; this model needs at least "
                f"{self.min_history}",
            )
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise ForecastInputError("data", f"value at window {row}, row {col} is NaN or inf")
        if self.preprocessor.cfg.target_transform == "log" and (values <= 0).any():
            row, col = np.argwhere(values <= 0)[0]
            raise ForecastInputError(
                "data", f"value at window {row}, row {col} is {values[row, col]:g}; this model "
                "forecasts log(y) (preprocess.target_transform: log) and needs every value > 0"
            )
        last_ds = np.atleast_1d(np.asarray(last_ds, dtype="datetime64[ns]"))
        if last_ds.shape[0] != values.shape[0]:
            raise ForecastInputError(
                "ds", f"{last_ds.shape[0]} timestamps for {values.shape[0]} windows"
            )
        if ids is not None and len(ids) != values.shape[0]:
            raise ForecastInputError(
                "series_id", f"{len(ids)} series ids for {values.shape[0]} windows"
            )
        try:
            scaled = self.preprocessor.transform_target(values, ids)
            regressors = self._regressors(values.shape, last_ds, horizon, ids, exog, future)
            point, lower, upper = self.forecaster.predict_intervals(
                scaled, last_ds, ids, **regressors
            )
        except UnknownSeriesError as exc:
            raise ForecastInputError("series_id", str(exc)) from None

        def inv(v: np.ndarray) -> np.ndarray:
            return self.preprocessor.inverse_transform_target(v[:, :horizon], ids)

        return Forecast(
            future_timestamps(last_ds, horizon, self.freq), inv(point), inv(lower), inv(upper)
        )

    def _regressors(
        self, shape: tuple[int, int], last_ds: np.ndarray, horizon: int, ids: Any,
        exog: dict[str, np.ndarray] | None, future: dict[str, np.ndarray] | None,
    ) -> dict[str, np.ndarray | None]:
        """``xh``/``xf`` for the forecaster (scaled per series), or {} without regressors.
        Future values past the requested ``horizon`` (a shorter request) repeat its last."""
        spec = self.exogenous
        if not spec:
            return {}
        n, length = shape
        xh = None
        if spec.historical:
            given = [self._regressor(exog, "exog", c, (n, length), ids, "history values",
                                     exact=True) for c in spec.historical]
            xh = np.stack([self.preprocessor.transform_column(c, v, ids)
                           for c, v in zip(spec.historical, given, strict=True)], axis=-1)
        full = self.horizon
        scaled = None
        if spec.future:
            cols = []
            for c in spec.future:
                v = self._regressor(future, "future_exog", c, (n, horizon), ids,
                                    f"future values (the horizon is {horizon})", exact=False)
                v = v[:, :full]
                if v.shape[1] < full:
                    v = np.concatenate([v, np.repeat(v[:, -1:], full - v.shape[1], 1)], 1)
                cols.append(self.preprocessor.transform_column(c, v, ids))
            scaled = np.stack(cols, axis=-1)
        xf = future_matrix(spec, scaled, future_timestamps(last_ds, full, self.freq))
        return {"xh": xh, "xf": xf}

    def _regressor(
        self, given: dict[str, np.ndarray] | None, field: str, column: str,
        shape: tuple[int, int], ids: Any, what: str, exact: bool,
    ) -> np.ndarray:
        """One regressor's ``(n_windows, length)`` values; errors name series and column."""
        n, length = shape

        def series(row: int) -> str:
            uid = ids[row] if ids is not None else self.meta.get("series_id") or "series"
            return f"series {str(uid)!r}"

        raw = (given or {}).get(column)
        if raw is None:
            raise ForecastInputError(
                f"{field}.{column}",
                f"{series(0)}: regressor {column!r} is missing; this model needs {what} of "
                f"{self._needed_text()}",
            )
        try:
            arr = np.asarray(raw, dtype=float)
        except (TypeError, ValueError):
            raise ForecastInputError(f"{field}.{column}",
                                     f"regressor {column!r} must be numbers") from None
        arr = np.atleast_2d(arr)
        if arr.ndim != 2 or arr.shape[0] != n or (arr.shape[1] != length if exact
                                                  else arr.shape[1] < length):
            got = arr.shape[1] if arr.ndim == 2 and arr.shape[0] == n else arr.shape
            raise ForecastInputError(
                f"{field}.{column}",
                f"{series(0)}: regressor {column!r} has {got} values; this model needs "
                f"{'exactly' if exact else 'at least'} {length} {what}",
            )
        bad = ~np.isfinite(arr[:, :length])
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ForecastInputError(
                f"{field}.{column}",
                f"{series(int(row))}: regressor {column!r} value {col} is missing, NaN or inf",
            )
        return arr

    def _needed_text(self) -> str:
        spec = self.exogenous
        parts = [f"historical {list(spec.historical)} (one per history value)"] \
            if spec.historical else []
        if spec.future:
            parts.append(f"future {list(spec.future)} (one per forecast step)")
        return " and ".join(parts)


@functools.lru_cache(maxsize=32)
def _fixed_step(freq: str) -> np.timedelta64 | None:
    """The length of one step of ``freq``; None for calendar frequencies (month, business
    day), which have no fixed length. Cached: parsing the alias is the costly part."""
    try:
        return np.timedelta64(pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).value, "ns")
    except ValueError:
        return None


def future_timestamps(last_ds: np.ndarray, horizon: int, freq: str) -> np.ndarray:
    """Timestamps of the ``horizon`` steps after each ``last_ds``, shape ``(n, horizon)``."""
    step = _fixed_step(freq)
    if step is None:
        offset = pd.tseries.frequencies.to_offset(freq)
        steps = range(1, horizon + 1)
        return np.array(
            [[(pd.Timestamp(t) + k * offset).to_datetime64() for k in steps] for t in last_ds],
            dtype="datetime64[ns]",
        )
    return last_ds[:, None] + step * np.arange(1, horizon + 1)[None, :]
