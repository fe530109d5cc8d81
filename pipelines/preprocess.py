"""Imputation and scaling of the long frame, fitted on training rows only.

Imported by the serving hot path too: numpy and pandas only, and the state is a small JSON
file (no pickle). Statistics are global over the training rows (all series together), so
``inverse_transform_target`` needs no series id; imputation works within each series.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import PreprocessConfig

FORMAT_VERSION = 1
KEY_COLUMNS = ("unique_id", "ds")
"""Columns that are carried through untouched; every other column is a value column."""


class Preprocessor:
    """Impute then scale ``y`` and the exogenous columns with training-row statistics."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg
        # Per value column: training mean (imputation fill), scaler center and scale.
        self.stats: dict[str, dict[str, float]] = {}

    def fit(self, df_train: pd.DataFrame) -> Preprocessor:
        """Learn the statistics of ``y`` and each exogenous column from the training rows."""
        columns = _value_columns(df_train)
        if "y" not in columns:
            raise ValueError(f"the frame has no 'y' column; columns: {list(df_train.columns)}")
        stats = {}
        for col in columns:
            values = df_train[col].to_numpy(dtype="float64", na_value=np.nan)
            values = values[~np.isnan(values)]
            if values.size == 0:
                raise ValueError(f"column {col!r} has no values in the training rows")
            center, scale = self._scaler(values)
            stats[col] = {"mean": float(values.mean()), "center": center, "scale": scale}
        self.stats = stats
        return self

    def fit_transform(self, df_train: pd.DataFrame) -> pd.DataFrame:
        """``fit`` then ``transform`` on the same rows."""
        return self.fit(df_train).transform(df_train)

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``df`` with missing values imputed and value columns scaled."""
        self._require_fitted()
        unknown = [c for c in _value_columns(df) if c not in self.stats]
        if unknown:
            raise ValueError(f"columns {unknown} were not seen in fit; fitted: {list(self.stats)}")
        columns = [c for c in self.stats if c in df.columns]
        values = df[columns].astype("float64")
        values = self._impute(values, df["unique_id"] if "unique_id" in df.columns else None)
        center = np.array([self.stats[c]["center"] for c in columns])
        scale = np.array([self.stats[c]["scale"] for c in columns])
        out = df.copy()
        out[columns] = (values.to_numpy() - center) / scale
        return out

    def transform_target(self, values: np.ndarray) -> np.ndarray:
        """Scale target values (any shape); no imputation."""
        self._require_fitted()
        stats = self.stats["y"]
        return (np.asarray(values, dtype="float64") - stats["center"]) / stats["scale"]

    def inverse_transform_target(self, values: np.ndarray) -> np.ndarray:
        """Scaled target values (any shape) back to the original units."""
        self._require_fitted()
        stats = self.stats["y"]
        return np.asarray(values, dtype="float64") * stats["scale"] + stats["center"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        self._require_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "config": self.cfg.model_dump(mode="json"),
            "columns": {col: dict(stats) for col, stats in self.stats.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from ``to_dict`` output."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"preprocessor format_version {version!r}; expected {FORMAT_VERSION}")
        pre = cls(PreprocessConfig.model_validate(data["config"]))
        pre.stats = {
            col: {key: float(value) for key, value in stats.items()}
            for col, stats in data["columns"].items()
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
        if not self.stats:
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

    def _impute(self, values: pd.DataFrame, series: pd.Series | None) -> pd.DataFrame:
        """Fill missing values within each series; error if any remain."""
        mode = self.cfg.imputation
        if mode == "mean":
            values = values.fillna({c: self.stats[c]["mean"] for c in values.columns})
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


def _per_series(
    values: pd.DataFrame,
    series: pd.Series | None,
    fill: Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """Apply ``fill`` to each series separately (one call when there is a single series)."""
    if series is None or series.nunique() <= 1:
        return fill(values)
    return values.groupby(series.to_numpy(), sort=False).transform(fill)
