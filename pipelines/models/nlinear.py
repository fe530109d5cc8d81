"""NLinear (Zeng et al., 2023) fitted in closed form with ridge regression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.linear_model import Ridge

from pipelines.exogenous import future_windows, history_windows
from pipelines.models.base import Forecaster, Panel, as_panel


class NLinearRidge(Forecaster):
    """Linear map from the last ``lookback`` values to all ``horizon`` steps, relative to the
    window's last value: ``y_hat = W (x - x_last) + b + x_last``.

    The paper trains the layer with Adam; ridge on every stride-1 training window gives the
    same model in closed form (ETTh1 OT, horizon 96: test MSE 0.053, MAE 0.177 in the paper).

    Hyper-parameters:
    - ``lookback`` (int, default 336): window length, as in the paper.
    - ``alpha`` (float, default 10.0): ridge penalty on the weights (not the bias). The
      penalty does not scale with the number of windows: tune it (on ETTh1's 8640 training
      rows validation MSE is lowest at 1000; on short series that over-shrinks).
    - ``exog_lags`` (int, default 24): past values of each historical regressor in a window.
    With regressors (``pipelines.exogenous``) the ridge also sees the last ``exog_lags``
    values of each historical regressor up to the origin and each future regressor at every
    forecast step: ``y_hat = W (x - x_last) + U xh + V xf + b + x_last``.
    Intervals are conformal.
    """

    name = "nlinear"
    uses_exog = True

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None

    @property
    def lookback(self) -> int:
        return int(self.params.get("lookback", 336))

    @property
    def alpha(self) -> float:
        return float(self.params.get("alpha", 10.0))

    @property
    def min_history(self) -> int:
        return self.lookback

    @property
    def exog_lags(self) -> int:
        return min(int(self.params.get("exog_lags", 24)), self.lookback) \
            if self.exog_inputs[0] else 0

    def fit(
        self, y: Panel, ds: Any = None, xh: Any = None, xf: Any = None
    ) -> NLinearRidge:
        ys, _ = as_panel(y, ds)
        xhs, xfs = self._exog_fit(len(ys), xh, xf)
        need = self.lookback + self.horizon
        if max(len(v) for v in ys) < need:
            raise ValueError(
                f"nlinear needs at least lookback+horizon={need} values in a series, got "
                f"{max(len(v) for v in ys)}"
            )
        inputs, targets = [], []
        for v, h, f in zip(ys, xhs, xfs, strict=True):
            if len(v) < need:
                continue
            windows = sliding_window_view(v, need)
            origins = np.arange(len(windows)) + self.lookback
            inputs.append(self._inputs(windows[:, : self.lookback],
                                       None if h is None else history_windows(
                                           h, origins, self.exog_lags),
                                       None if f is None else future_windows(
                                           f, origins, self.horizon)))
            targets.append(windows[:, self.lookback :] - windows[:, self.lookback - 1 :
                                                                 self.lookback])
        ridge = Ridge(alpha=self.alpha, fit_intercept=True)
        ridge.fit(np.concatenate(inputs), np.concatenate(targets))
        self.coef = ridge.coef_.T.copy()  # (inputs, horizon)
        self.intercept = np.asarray(ridge.intercept_, dtype=np.float64)
        return self

    def _inputs(self, x: np.ndarray, xh: np.ndarray | None, xf: np.ndarray | None
                ) -> np.ndarray:
        """The ridge's inputs: the window minus its last value, then the regressors flat."""
        parts = [x - x[:, -1:]]
        parts += [r.reshape(len(x), -1) for r in (xh, xf) if r is not None]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def predict(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> np.ndarray:
        if self.coef is None or self.intercept is None:
            raise RuntimeError("nlinear: call fit() or load() before predict()")
        x = self._check_history(histories)[:, -self.lookback :]
        xh, xf = self._check_exog(len(x), xh, xf)
        return self._inputs(x, xh, xf) @ self.coef + self.intercept + x[:, -1:]

    def _save(self, path: Path) -> None:
        np.savez(path / "nlinear.npz", coef=self.coef, intercept=self.intercept)

    def _load(self, path: Path) -> None:
        with np.load(path / "nlinear.npz") as data:
            self.coef = data["coef"]
            self.intercept = data["intercept"]
