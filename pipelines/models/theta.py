"""The Theta method (Assimakopoulos & Nikolopoulos) via statsmodels' ``ThetaModel``, per series."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.tsa.forecasting.theta import ThetaModel, ThetaModelResults

from pipelines.models.base import Forecaster

METHODS = ("additive", "auto")


class Theta(Forecaster):
    """Theta forecasts: SES with drift (half the slope of the linear trend at ``theta`` = 2).

    Hyper-parameters (defaults): ``theta`` (2.0), ``deseasonalize`` (True: classical
    decomposition with period ``season`` (24), when ``use_test`` (True) finds the series
    seasonal at 90%), ``method`` ("additive"; "auto" would pick the multiplicative
    decomposition for positive data, which per-series standardised values never are),
    ``lookback`` (336): the values each forecast is estimated on.

    The method is closed-form (an OLS drift and an SES level), so it is re-estimated on the
    last ``lookback`` values of each window, as the M4 Theta benchmark does at each origin.
    ``fit`` estimates the residual variance ``sigma2`` of the series once (statsmodels: an
    ARIMA(0,1,1) by maximum likelihood on the training tail, the slow part); intervals at
    ``level`` then follow statsmodels' formula per window,
    ``sigma2 * (1 + (h-1)(1 + (alpha-1)^2))`` with the window's SES ``alpha``.
    """

    name = "theta"
    local = True

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        method = self.params.get("method", "additive")
        if method not in METHODS:
            raise ValueError(f"theta method must be one of {METHODS}, got {method!r}")
        if self.deseasonalize and self.min_history < 2 * self.season:
            raise ValueError(
                f"theta lookback must cover two seasons ({2 * self.season}) to deseasonalize, "
                f"got {self.min_history}"
            )
        self.sigma2: float | None = None

    @property
    def season(self) -> int:
        return int(self.params.get("season", 24))

    @property
    def deseasonalize(self) -> bool:
        return bool(self.params.get("deseasonalize", True))

    @property
    def min_history(self) -> int:
        return int(self.params.get("lookback", 336))

    def _results(self, window: np.ndarray) -> ThetaModelResults:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return ThetaModel(
                window[-self.min_history :],
                period=self.season,
                deseasonalize=self.deseasonalize,
                use_test=bool(self.params.get("use_test", True)),
                method=self.params.get("method", "additive"),
            ).fit()

    def _one(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.sigma2 is None:
            raise RuntimeError("theta: call fit() or load() before predicting")
        results = self._results(window)
        point = results.forecast(self.horizon, theta=float(self.params.get("theta", 2.0)))
        point = point.to_numpy(float)
        alpha = float(results.params["alpha"])
        steps = np.arange(self.horizon)
        sigma_h = np.sqrt((1 + steps * (1 + (alpha - 1) ** 2)) * self.sigma2)
        half = sigma_h * stats.norm.ppf(0.5 + self.level / 2)
        return point, point - half, point + half

    def fit(self, y: np.ndarray, ds: np.ndarray | None = None) -> Theta:
        y = np.asarray(y, dtype=float)
        if len(y) < self.min_history:
            raise ValueError(f"theta needs at least {self.min_history} values, got {len(y)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' ARIMA fit on a short series
            self.sigma2 = float(self._results(y).sigma2)
        _, lower, upper = self._one(y)
        self.interval_halfwidth = (upper - lower) / 2.0
        return self

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecasts and intervals at ``level``, the method estimated per window."""
        parts = [self._one(w) for w in self._check_history(histories)]
        point, lower, upper = (np.stack(p) for p in zip(*parts, strict=True))
        return point, lower, upper

    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        return self.predict_intervals(histories, last_ds)[0]

    def calibrate(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """Keep the model-based half-widths set by ``fit``; the arguments are not used."""
        if self.interval_halfwidth is None:
            raise RuntimeError("theta: call fit() before calibrate()")
        return self.interval_halfwidth

    def _save(self, path: Path) -> None:
        if self.sigma2 is None:
            raise RuntimeError("theta: nothing fitted to save")
        (path / "theta.json").write_text(json.dumps({"sigma2": self.sigma2}))

    def _load(self, path: Path) -> None:
        self.sigma2 = float(json.loads((path / "theta.json").read_text())["sigma2"])
