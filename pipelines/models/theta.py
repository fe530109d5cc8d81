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
    The residual variance ``sigma2`` of the series is estimated once, on the training tail,
    when intervals are first needed (statsmodels: an ARIMA(0,1,1) by maximum likelihood, the
    slow part, which tuning's point forecasts skip); intervals at ``level`` then follow
    statsmodels' formula per window, ``sigma2 * (1 + (h-1)(1 + (alpha-1)^2))`` with the
    window's SES ``alpha``.
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
        self._sigma2: float | None = None
        self._tail: np.ndarray | None = None
        self._halfwidth: np.ndarray | None = None

    @property
    def interval_halfwidth(self) -> np.ndarray | None:  # type: ignore[override]
        """Half-widths at the end of training (computed on first use)."""
        if self._halfwidth is None and self._tail is not None:
            _, lower, upper = self._one(self._tail, intervals=True)
            self._halfwidth = (upper - lower) / 2.0
        return self._halfwidth

    @interval_halfwidth.setter
    def interval_halfwidth(self, value: np.ndarray | None) -> None:
        self._halfwidth = value

    @property
    def sigma2(self) -> float:
        """Residual variance of the series, estimated on the training tail on first use."""
        if self._sigma2 is None:
            if self._tail is None:
                raise RuntimeError("theta: call fit() or load() before predicting intervals")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # statsmodels' ARIMA fit on a short series
                self._sigma2 = float(self._results(self._tail).sigma2)
        return self._sigma2

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

    def _one(
        self, window: np.ndarray, intervals: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        results = self._results(window)
        point = results.forecast(self.horizon, theta=float(self.params.get("theta", 2.0)))
        point = point.to_numpy(float)
        if not intervals:
            return point, None, None
        alpha = float(results.params["alpha"])
        steps = np.arange(self.horizon)
        sigma_h = np.sqrt((1 + steps * (1 + (alpha - 1) ** 2)) * self.sigma2)
        half = sigma_h * stats.norm.ppf(0.5 + self.level / 2)
        return point, point - half, point + half

    def fit(self, y: np.ndarray, ds: np.ndarray | None = None) -> Theta:
        y = np.asarray(y, dtype=float)
        if len(y) < self.min_history:
            raise ValueError(f"theta needs at least {self.min_history} values, got {len(y)}")
        self._tail, self._sigma2, self._halfwidth = y[-self.min_history :], None, None
        return self

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecasts and intervals at ``level``, the method estimated per window."""
        parts = [self._one(w, intervals=True) for w in self._check_history(histories)]
        point, lower, upper = (np.stack(p) for p in zip(*parts, strict=True))
        return point, lower, upper

    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        return np.stack([self._one(w, intervals=False)[0] for w in self._check_history(histories)])

    def calibrate(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """The model-based half-widths at the end of training; the arguments are not used."""
        if self.interval_halfwidth is None:
            raise RuntimeError("theta: call fit() before calibrate()")
        return self.interval_halfwidth

    def _save(self, path: Path) -> None:
        (path / "theta.json").write_text(json.dumps({"sigma2": self.sigma2}))

    def _load(self, path: Path) -> None:
        self._sigma2 = float(json.loads((path / "theta.json").read_text())["sigma2"])
