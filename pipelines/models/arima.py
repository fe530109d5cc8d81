"""(Seasonal) ARIMA via statsmodels SARIMAX, with a vectorised Kalman forecast over origins."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.statespace.mlemodel import MLEResults
from statsmodels.tsa.statespace.sarimax import SARIMAX

from pipelines.models.base import Forecaster


class Arima(Forecaster):
    """SARIMAX(p, d, q)(P, D, Q, s) fitted by maximum likelihood on the training tail.

    Hyper-parameters (defaults): ``p`` (2), ``d`` (1), ``q`` (1); seasonal ``P``, ``D``, ``Q``
    (0) and ``s`` (0 = no seasonal part); ``trend`` ("n" or "c", default "n"; time trends are
    not offered because ``predict`` applies the model to windows whose position in time is
    unknown); ``fit_window`` (2000): fit on that many most recent training values;
    ``maxiter`` (50): optimiser iterations.

    Intervals are the model's own Gaussian forecast intervals at ``level``:
    ``predict_intervals`` computes them per window. ``fit`` stores the steady-state half-width
    per step in ``interval_halfwidth``, and ``calibrate`` keeps it (validation residuals are
    not used), so the generic calibrate-then-predict_intervals pipeline works unchanged.
    """

    name = "arima"
    local = True

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        trend = self.params.get("trend", "n")
        if trend not in ("n", "c"):
            raise ValueError(f"arima trend must be 'n' or 'c', got {trend!r}")
        self.results: MLEResults | None = None

    def _order(self, key: str, default: int) -> int:
        return int(self.params.get(key, default))

    @property
    def min_history(self) -> int:
        s = self._order("s", 0)
        ar = self._order("p", 2) + self._order("P", 0) * s
        ma = self._order("q", 1) + self._order("Q", 0) * s
        return self._order("d", 1) + self._order("D", 0) * s + max(ar, ma) + 1

    def _model(self, y: np.ndarray) -> SARIMAX:
        s = self._order("s", 0)
        seasonal = (self._order("P", 0), self._order("D", 0), self._order("Q", 0), s)
        return SARIMAX(
            y,
            order=(self._order("p", 2), self._order("d", 1), self._order("q", 1)),
            seasonal_order=seasonal if s > 1 else (0, 0, 0, 0),
            trend=self.params.get("trend", "n"),
        )

    def fit(self, y: np.ndarray, ds: np.ndarray | None = None) -> Arima:
        y = np.asarray(y, dtype=float)[-self._order("fit_window", 2000) :]
        if len(y) < 2 * self.min_history:
            raise ValueError(f"arima needs at least {2 * self.min_history} values, got {len(y)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            # low_memory: the kept results hold no per-step state covariances (35 MB -> 0.6 MB
            # per series at s=24 on 336 values); forecasts from windows do not need them
            self.results = self._model(y).fit(
                disp=False, maxiter=self._order("maxiter", 50), low_memory=True
            )
        self.interval_halfwidth = self._halfwidth()
        return self

    def _halfwidth(self) -> np.ndarray:
        """Forecast half-widths after the fit window, from a transient full filter pass (the
        low-memory results keep no forecast covariance)."""
        results = self._fitted()
        full = results.model.filter(results.params)
        bounds = full.get_forecast(self.horizon).conf_int(alpha=1.0 - self.level)
        return (bounds[:, 1] - bounds[:, 0]) / 2.0

    def _fitted(self) -> MLEResults:
        if self.results is None:
            raise RuntimeError("arima: call fit() or load() before predicting")
        return self.results

    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        """Apply the fitted parameters to each window (one Kalman filter per window)."""
        results = self._fitted()
        histories = self._check_history(histories)
        return np.stack([results.apply(w).forecast(self.horizon) for w in histories])

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecasts and the model's own intervals at ``level``, per window."""
        results = self._fitted()
        point, lower, upper = [], [], []
        for window in self._check_history(histories):
            forecast = results.apply(window).get_forecast(self.horizon)
            bounds = forecast.conf_int(alpha=1.0 - self.level)
            point.append(forecast.predicted_mean)
            lower.append(bounds[:, 0])
            upper.append(bounds[:, 1])
        return np.stack(point), np.stack(lower), np.stack(upper)

    def calibrate(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """Keep the model-based half-widths set by ``fit``; the arguments are not used."""
        if self.interval_halfwidth is None:
            self.interval_halfwidth = self._halfwidth()
        return self.interval_halfwidth

    def forecast_origins(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """Exact forecasts from every origin with one Kalman filter pass over ``y``.

        The predicted state ``a[o] = E[state_o | y[:o]]`` is propagated for all origins at
        once: ``y_hat = d + Z a``, then ``a <- c + T a``, ``horizon`` times.
        """
        y = np.asarray(y, dtype=float)
        origins = np.asarray(origins, dtype=int)
        if origins.size and (origins.min() < self.min_history or origins.max() > len(y)):
            raise ValueError(
                f"origins must lie in [{self.min_history}, {len(y)}] (arima needs "
                f"{self.min_history} history values), got [{origins.min()}, {origins.max()}]"
            )
        filtered = self._fitted().apply(y).filter_results
        # Without exog or time trends every system matrix is constant over time.
        design = filtered.design[0, :, 0]
        obs_intercept = filtered.obs_intercept[0, 0]
        transition = filtered.transition[:, :, 0]
        state_intercept = filtered.state_intercept[:, :1]
        state = filtered.predicted_state[:, origins]
        out = np.empty((origins.size, self.horizon))
        for k in range(self.horizon):
            out[:, k] = obs_intercept + design @ state
            state = state_intercept + transition @ state
        return out

    def _save(self, path: Path) -> None:
        results = self._fitted()
        np.savez(path / "arima.npz", params=results.params, endog=results.model.endog[:, 0])

    def _load(self, path: Path) -> None:
        with np.load(path / "arima.npz") as data:
            self.results = self._model(data["endog"]).filter(data["params"], low_memory=True)
