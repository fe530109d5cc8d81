"""Imputation and scaling of the long frame, fitted per series on its training rows only.

Imported by the serving hot path too: numpy and pandas only, and the state is a small JSON
file (no pickle). Statistics are per series (``unique_id``), so a forecast is scaled and
unscaled with the statistics of its own series; imputation works within each series.
A preprocessor fitted on one series applies that series' statistics to any window (the
single-series models' rule, which serving relies on for windows without a known id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import PreprocessConfig

FORMAT_VERSION = 2
KEY_COLUMNS = ("unique_id", "ds")
"""Columns that are carried through untouched; every other column is a value column."""
DEFAULT_SERIES = "series"
"""The id of a frame without ``unique_id``."""


class UnknownSeriesError(KeyError):
    """An id the preprocessor was not fitted on; the message names it and the known ones."""

    def __init__(self, series: str, known: Sequence[str]) -> None:
        shown = ", ".join(repr(k) for k in list(known)[:5])
        more = f" and {len(known) - 5} more" if len(known) > 5 else ""
        super().__init__(
            f"unknown series {series!r}: this model forecasts the {len(known)} series it was "
            f"trained on ({shown}{more})"
        )
        self.series = series

    def __str__(self) -> str:
        return str(self.args[0])


class Preprocessor:
    """Impute then scale ``y`` and the exogenous columns with each series' training statistics."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        # Per series, per value column: training mean (imputation fill), scaler center and scale.
        self.series: dict[str, dict[str, dict[str, float]]] = {}
        # cached: series id -> row, and column -> (centers, scales) over the series
        self._cache: tuple[dict[str, int], dict[str, tuple[np.ndarray, np.ndarray]]] | None = (
            None
        )

    @property
    def columns(self) -> list[str]:
        """The value columns fitted."""
        return list(next(iter(self.series.values()))) if self.series else []

    @property
    def series_ids(self) -> list[str]:
        return list(self.series)

    def fit(self, df_train: pd.DataFrame) -> Preprocessor:
        """Learn the statistics of ``y`` and each exogenous column from each series' rows."""
        columns = _value_columns(df_train)
        if "y" not in columns:
            raise ValueError(f"the frame has no 'y' column; columns: {list(df_train.columns)}")
        ids = _ids(df_train)
        series: dict[str, dict[str, dict[str, float]]] = {}
        for uid, group in df_train[columns].groupby(ids, sort=False):
            stats = {}
            for col in columns:
                values = group[col].to_numpy(dtype="float64", na_value=np.nan)
                values = values[~np.isnan(values)]
                if values.size == 0:
                    raise ValueError(
                        f"column {col!r} has no values in the training rows of series {uid!r}"
                    )
                model_values = self._log(values, uid) if col == "y" else values
                center, scale = self._scaler(model_values)
                stats[col] = {"mean": float(values.mean()), "center": center, "scale": scale}
            series[str(uid)] = stats
        self.series = series
        self._cache = None
        return self

    def fit_transform(self, df_train: pd.DataFrame) -> pd.DataFrame:
        """``fit`` then ``transform`` on the same rows."""
        return self.fit(df_train).transform(df_train)

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``df`` with missing values imputed and value columns scaled."""
        columns, scaled = self.scaled_columns(df)
        out = df.copy()
        out[columns] = scaled
        return out

    def scaled_columns(self, df: pd.DataFrame) -> tuple[list[str], np.ndarray]:
        """The fitted value columns of ``df`` and their imputed, scaled values (rows x columns):
        ``transform``'s, without a copy of the frame."""
        self._require_fitted()
        unknown = [c for c in _value_columns(df) if c not in self.columns]
        if unknown:
            raise ValueError(f"columns {unknown} were not seen in fit; fitted: {self.columns}")
        columns = [c for c in self.columns if c in df.columns]
        ids = _ids(df)
        values = self._impute(df[columns].astype("float64"), ids)
        rows = self._rows(ids)
        center = np.array([[self.series[k][c]["center"] for c in columns] for k in self.series])
        scale = np.array([[self.series[k][c]["scale"] for c in columns] for k in self.series])
        if self.cfg.target_transform == "log" and "y" in columns:
            values["y"] = self._log(values["y"].to_numpy(), ids)
        return columns, (values.to_numpy() - center[rows]) / scale[rows]

    def transform_target(
        self, values: np.ndarray, ids: Sequence[Any] | np.ndarray | None = None
    ) -> np.ndarray:
        """Scale target values (any shape; with ``ids``, one id per row); no imputation."""
        return self.transform_column("y", values, ids)

    def transform_column(
        self, column: str, values: np.ndarray, ids: Sequence[Any] | np.ndarray | None = None
    ) -> np.ndarray:
        """Scale values of ``column`` (``y`` or a regressor; ``ids`` as in transform_target)."""
        center, scale = self._stats(column, values, ids)
        values = np.asarray(values, dtype="float64")
        if column == "y":
            values = self._log(values, ids)
        return (values - center) / scale

    def inverse_transform_target(
        self, values: np.ndarray, ids: Sequence[Any] | np.ndarray | None = None
    ) -> np.ndarray:
        """Scaled target values back to the original units (``ids`` as in transform_target)."""
        center, scale = self._stats("y", values, ids)
        out = np.asarray(values, dtype="float64") * scale + center
        if self.cfg.target_transform == "log":
            with np.errstate(over="ignore"):
                out = np.exp(out)
        return out

    def _log(self, values: np.ndarray, ids: Any) -> np.ndarray:
        """``log(values)`` under ``target_transform: log`` (``values`` unchanged otherwise);
        a value <= 0 raises, naming its series (``ids``: one id, or one per row) and row."""
        if self.cfg.target_transform != "log":
            return values
        values = np.asarray(values, dtype="float64")
        bad = np.argwhere(~(values > 0) & ~np.isnan(values))
        if len(bad):
            row = tuple(int(i) for i in bad[0])
            keys = np.atleast_1d(np.asarray(ids, dtype=object)) if ids is not None else None
            uid = (keys[0] if len(keys) == 1 else keys[row[0]]) if keys is not None else None
            where = "" if uid is None else f" of series {str(uid)!r}"
            raise ValueError(
                f"preprocess.target_transform 'log' needs y > 0: {len(bad)} value(s) <= 0, "
                f"the first {values[row]:g} at row {row[0] if len(row) == 1 else row}{where}"
            )
        return np.log(values)

    def _stats(self, column: str, values: np.ndarray, ids: Any) -> tuple[Any, Any]:
        """Center and scale of ``column`` broadcastable to ``values``: scalars for one series,
        one per row for several."""
        self._require_fitted()
        index, by_column = self._cached()
        if column not in by_column:
            if column not in self.columns:
                raise ValueError(f"column {column!r} was not seen in fit; fitted: {self.columns}")
            by_column[column] = (
                np.array([s[column]["center"] for s in self.series.values()]),
                np.array([s[column]["scale"] for s in self.series.values()]),
            )
        center, scale = by_column[column]
        if len(index) == 1:
            return center[0], scale[0]
        if ids is None:
            raise UnknownSeriesError("<none>", list(index))
        rows = self._rows(ids)
        shape = (-1,) + (1,) * (np.ndim(values) - 1)
        return center[rows].reshape(shape), scale[rows].reshape(shape)

    def _cached(self) -> tuple[dict[str, int], dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Series id -> position, built once per fit (not per call: a panel's evaluation
        calls this once per series, so rebuilding it made evaluation quadratic in the series)."""
        if self._cache is None:
            self._cache = ({k: i for i, k in enumerate(self.series)}, {})
        return self._cache

    def _rows(self, ids: Sequence[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Index of each id's series (every id with one fitted series maps to it)."""
        if len(self.series) == 1:
            return np.zeros(len(ids), dtype=int)
        index = self._cached()[0]
        keys = np.asarray(ids, dtype=object)
        if len(keys) > len(index):  # a frame's rows: one vectorised hash join
            rows = pd.Index(list(index)).get_indexer(keys)
        else:  # a few ids (per series, per request): a dict lookup each, not O(series) per call
            rows = np.fromiter((index.get(k, -1) for k in keys), dtype=int, count=len(keys))
        if (rows < 0).any():
            raise UnknownSeriesError(str(keys[rows < 0][0]), list(index))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        self._require_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "config": self.cfg.model_dump(mode="json"),
            "series": self.series,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from ``to_dict`` output."""
        version = data.get("format_version")
        if version not in (1, FORMAT_VERSION):
            raise ValueError(f"preprocessor format_version {version!r}; expected {FORMAT_VERSION}")
        pre = cls(PreprocessConfig.model_validate(data["config"]))
        # version 1 held one set of statistics for the whole (single-series) frame
        series = data["series"] if version == FORMAT_VERSION else {DEFAULT_SERIES: data["columns"]}
        pre.series = {
            str(uid): {
                col: {key: float(value) for key, value in stats.items()}
                for col, stats in columns.items()
            }
            for uid, columns in series.items()
        }
        return pre

    def save(self, path: Path) -> None:
        """Write the state as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> Preprocessor:
        """Read a preprocessor written by ``save``."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def _require_fitted(self) -> None:
        if not self.series:
            raise RuntimeError("Preprocessor is not fitted; call fit() on the training rows")

    def _scaler(self, values: np.ndarray) -> tuple[float, float]:
        """Center and scale so that ``(x - center) / scale`` is the scaled value."""
        if self.cfg.scaler == "standard":
            center, scale = float(values.mean()), float(values.std(ddof=0))
        elif self.cfg.scaler == "minmax":
            center, scale = float(values.min()), float(values.max() - values.min())
        else:
            center, scale = 0.0, 1.0
        return center, scale if scale > 0 else 1.0

    def _impute(self, values: pd.DataFrame, series: pd.Series) -> pd.DataFrame:
        """Fill missing values within each series; error if any remain."""
        mode = self.cfg.imputation
        if not values.isna().to_numpy().any():  # every mode would leave the values as they are
            return values
        if mode == "mean":
            rows = self._rows(series)
            means = np.array(
                [[self.series[k][c]["mean"] for c in values.columns] for k in self.series]
            )
            filled = np.where(values.isna().to_numpy(), means[rows], values.to_numpy())
            values = pd.DataFrame(filled, columns=values.columns, index=values.index)
        elif mode == "ffill":
            values = _per_series(values, series, lambda v: v.ffill().bfill())
        elif mode == "linear":
            values = _per_series(
                values, series, lambda v: v.interpolate(method="linear", limit_direction="both")
            )
        remaining = values.isna().sum()
        remaining = remaining[remaining > 0]
        if len(remaining):
            counts = ", ".join(f"{col!r}: {n}" for col, n in remaining.items())
            hint = (
                "choose another imputation" if mode == "none" else "a series has no values at all"
            )
            raise ValueError(f"missing values after imputation {mode!r} ({counts}); {hint}")
        return values


def _value_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in KEY_COLUMNS]


def _ids(df: pd.DataFrame) -> pd.Series:
    """The series id of each row (``DEFAULT_SERIES`` without a ``unique_id`` column)."""
    if "unique_id" in df.columns:
        return df["unique_id"].astype(str)
    return pd.Series(DEFAULT_SERIES, index=df.index)


def _per_series(
    values: pd.DataFrame,
    series: pd.Series,
    fill: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """Apply ``fill`` to each series separately (one call when there is a single series)."""
    if series.nunique() <= 1:
        return fill(values)
    return values.groupby(series.to_numpy(), sort=False).transform(fill)
