"""Seasonal-naive baseline: each step repeats the value one season earlier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.models.base import Forecaster, Panel, as_panel


class SeasonalNaive(Forecaster):
    """y[t+h] = y[t+h-k*season] for the smallest k that reaches into the history.

    Hyper-parameter: ``season`` (default 24, a day of hourly data). Intervals are conformal.
    """

    name = "seasonal_naive"

    @property
    def season(self) -> int:
        return int(self.params.get("season", 24))

    @property
    def min_history(self) -> int:
        return self.season

    def fit(self, y: Panel, ds: Any = None) -> SeasonalNaive:
        shortest = min(len(v) for v in as_panel(y, ds)[0])
        if shortest < self.season:
            raise ValueError(f"seasonal_naive needs at least {self.season} values, got {shortest}")
        return self

    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        histories = self._check_history(histories)
        last_season = histories[:, -self.season :]
        reps = int(np.ceil(self.horizon / self.season))
        return np.tile(last_season, (1, reps))[:, : self.horizon]

    def _save(self, path: Path) -> None:
        """Nothing beyond forecaster.json: the model is its season."""

    def _load(self, path: Path) -> None:
        """Nothing to read."""
