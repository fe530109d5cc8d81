"""Exponential smoothing (ETS, additive error) via statsmodels' ``ETSModel``, one per series."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.exponential_smoothing.ets import ETSModel, ETSResults

from pipelines.models.base import Forecaster

_COMPONENTS = {"none": None, None: None, "add": "add"}


def _component(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key, "add" if key == "seasonal" else "none")
    if value not in _COMPONENTS:
        raise ValueError(f"ets {key} must be 'none' or 'add', got {value!r}")
    return _COMPONENTS[value]


class ETS(Forecaster):
    """ETS(A, trend, seasonal) with smoothing parameters fitted by maximum likelihood.

    Hyper-parameters (defaults): ``trend`` ("none" or "add", "none"), ``damped`` (False; only
    with a trend), ``seasonal`` ("none" or "add", "add"), ``season`` (24), ``lookback`` (336):
    the values each forecast smooths; ``fit_window`` (1000): the most recent training values
    the parameters are fitted on; ``maxiter`` (200). Errors, trend and season are additive
    because the model sees per-series standardised values (which are not positive).

    Initial states come from the heuristic of Hyndman et al. (statsmodels
    ``initialization_method="heuristic"``) both when fitting and when forecasting, so the
    fitted smoothing parameters apply unchanged to any window of ``lookback`` values.
    Intervals are the model's own (analytic for additive ETS) at ``level``, per window;
    ``fit`` also stores the half-widths at the end of training as ``interval_halfwidth``.
    """

    name = "ets"
    local = True

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.trend = _component(self.params, "trend")
        self.seasonal = _component(self.params, "seasonal")
        self.damped = bool(self.params.get("damped", False)) and self.trend is not None
        if self.min_history < 10 or (self.seasonal and self.min_history < 2 * self.season):
            raise ValueError(
                f"ets lookback must be at least 10 and two seasons ({2 * self.season}) with a "
                f"seasonal component, got {self.min_history}"
            )
        self.fitted_params: np.ndarray | None = None

    @property
    def season(self) -> int:
        return int(self.params.get("season", 24))

    @property
    def min_history(self) -> int:
        return int(self.params.get("lookback", 336))

    def _model(self, y: np.ndarray) -> ETSModel:
        return ETSModel(
            pd.Series(np.asarray(y, dtype=float)),  # statsmodels 0.15 needs an index here
            error="add",
            trend=self.trend,
            damped_trend=self.damped,
            seasonal=self.seasonal,
            seasonal_periods=self.season if self.seasonal else None,
            initialization_method="heuristic",
        )

    def fit(self, y: np.ndarray, ds: np.ndarray | None = None) -> ETS:
        y = np.asarray(y, dtype=float)[-int(self.params.get("fit_window", 1000)) :]
        if len(y) < self.min_history:
            raise ValueError(f"ets needs at least {self.min_history} values, got {len(y)}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            results = self._model(y).fit(disp=False, maxiter=int(self.params.get("maxiter", 200)))
        self.fitted_params = np.asarray(results.params, dtype=float)
        _, lower, upper = self._forecast(results)
        self.interval_halfwidth = (upper - lower) / 2.0
        return self

    def _forecast(self, results: ETSResults) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = results.nobs
        frame = results.get_prediction(start=n, end=n + self.horizon - 1).summary_frame(
            alpha=1.0 - self.level
        )
        return tuple(frame[c].to_numpy(float) for c in ("mean", "pi_lower", "pi_upper"))

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecasts and the model's own intervals at ``level``: the fitted parameters
        smooth the last ``lookback`` values of each window."""
        if self.fitted_params is None:
            raise RuntimeError("ets: call fit() or load() before predicting")
        parts = [
            self._forecast(self._model(w[-self.min_history :]).smooth(self.fitted_params))
            for w in self._check_history(histories)
        ]
        point, lower, upper = (np.stack(p) for p in zip(*parts, strict=True))
        return point, lower, upper

    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        return self.predict_intervals(histories, last_ds)[0]

    def calibrate(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """Keep the model-based half-widths set by ``fit``; the arguments are not used."""
        if self.interval_halfwidth is None:
            raise RuntimeError("ets: call fit() before calibrate()")
        return self.interval_halfwidth

    def _save(self, path: Path) -> None:
        if self.fitted_params is None:
            raise RuntimeError("ets: nothing fitted to save")
        (path / "ets.json").write_text(json.dumps({"params": self.fitted_params.tolist()}))

    def _load(self, path: Path) -> None:
        data = json.loads((path / "ets.json").read_text())
        self.fitted_params = np.asarray(data["params"], dtype=float)
