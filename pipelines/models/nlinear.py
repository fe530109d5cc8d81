"""NLinear (Zeng et al., 2023) fitted in closed form with ridge regression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.exogenous import future_windows, history_windows
from pipelines.models.base import Forecaster, Panel, as_panel
from pipelines.models.window_scale import WindowScale

SHARD_WINDOWS = 65536
"""Training windows gathered before they are added to the normal equations: the fit holds
about this many rows of inputs at a time (90 MB at lookback 168), whatever the panel's size."""


class NLinearRidge(Forecaster):
    """Linear map from the last ``lookback`` values to all ``horizon`` steps, relative to the
    window's last value: ``y_hat = W (x - x_last) + b + x_last``.

    The paper trains the layer with Adam; ridge on every stride-1 training window gives the
    same model in closed form (ETTh1 OT, horizon 96: test MSE 0.053, MAE 0.177 in the paper).
    The windows are summed into the ridge's normal equations shard by shard (``RidgeSums``),
    so a fit needs memory for ``lookback**2`` sums and one shard, not for every window.

    Hyper-parameters:
    - ``lookback`` (int, default 336): window length, as in the paper.
    - ``alpha`` (float, default 10.0): ridge penalty on the weights (not the bias). The
      penalty does not scale with the number of windows: tune it (on ETTh1's 8640 training
      rows validation MSE is lowest at 1000; on short series that over-shrinks).
    - ``exog_lags`` (int, default 24): past values of each historical regressor in a window.
    - ``window_scale`` (``none``, the default, or ``seasonal``): ``seasonal`` divides each
      window's inputs and targets (after subtracting its last value) by the window's mean
      absolute ``season``-step difference (MASE's scale) and multiplies the forecast back, so
      every window weighs alike in the fit whatever its series' amplitude (M4 hourly: test OWA
      0.712 -> 0.672 at lookback 336, with ``preprocess.target_transform: log`` 0.577;
      ``bench/m4_nlinear_variants.py``).
    - ``season`` (int, default 24): that difference's lag; ``lookback`` must exceed it.
      The bias and regressor terms are multiplied by the window's scale too.
    - ``scale_offset`` (float >= 0, default 0): added to every window's scale (in the
      per-series scaled units), so that nearly flat windows do not weigh most in the fit
      (M4 hourly, log target: 0.03 takes validation OWA from 0.551 to 0.539).
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
        self.scaler = WindowScale.from_params(self.name, self.params, self.lookback)

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
        sums, inputs, targets = RidgeSums(), [], []
        for v, h, f in zip(ys, xhs, xfs, strict=True):
            if len(v) < need:
                continue
            windows = sliding_window_view(v, need)
            origins = np.arange(len(windows)) + self.lookback
            x = windows[:, : self.lookback]
            scale = self.scaler(x)
            inputs.append(self._inputs(x, None if h is None else history_windows(
                                           h, origins, self.exog_lags),
                                       None if f is None else future_windows(
                                           f, origins, self.horizon), scale))
            targets.append((windows[:, self.lookback :] - x[:, -1:]) / scale)
            if sum(len(x) for x in inputs) >= SHARD_WINDOWS:
                sums.add(np.concatenate(inputs), np.concatenate(targets))
                inputs, targets = [], []
        if inputs:
            sums.add(np.concatenate(inputs), np.concatenate(targets))
        self.coef, self.intercept = sums.solve(self.alpha)  # (inputs, horizon), (horizon,)
        return self

    def _inputs(self, x: np.ndarray, xh: np.ndarray | None, xf: np.ndarray | None,
                scale: np.ndarray) -> np.ndarray:
        """The ridge's inputs: the window minus its last value over its scale, then the
        regressors flat."""
        parts = [(x - x[:, -1:]) / scale]
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
        scale = self.scaler(x)
        return (self._inputs(x, xh, xf, scale) @ self.coef + self.intercept) * scale + x[:, -1:]

    def _save(self, path: Path) -> None:
        np.savez(path / "nlinear.npz", coef=self.coef, intercept=self.intercept)

    def _load(self, path: Path) -> None:
        with np.load(path / "nlinear.npz") as data:
            self.coef = data["coef"]
            self.intercept = data["intercept"]


class RidgeSums:
    """Ridge regression with an intercept (``sklearn.linear_model.Ridge``'s solution, penalty
    on the weights only) from sums over row blocks added one at a time.

    Keeps ``n``, the column sums and the cross-products of inputs and targets, each shifted by
    the first block's means (so the centring does not cancel digits when the means are large);
    ``solve`` centres them and solves ``(Xc'Xc + alpha I) W = Xc'Yc`` as sklearn's Cholesky solver
    does. Memory: ``(inputs + targets)**2`` numbers, whatever the number of rows."""

    def __init__(self) -> None:
        self.n = 0
        self.shift_x: np.ndarray | None = None
        self.shift_y = np.zeros(0)
        self.sum_x = self.sum_y = self.xx = self.xy = np.zeros(0)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows ``x`` (n, inputs) with targets ``y`` (n, outputs)."""
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(axis=0), y.mean(axis=0)
            self.sum_x, self.sum_y = np.zeros(x.shape[1]), np.zeros(y.shape[1])
            self.xx = np.zeros((x.shape[1], x.shape[1]))
            self.xy = np.zeros((x.shape[1], y.shape[1]))
        xc, yc = x - self.shift_x, y - self.shift_y
        self.n += len(x)
        self.sum_x += xc.sum(axis=0)
        self.sum_y += yc.sum(axis=0)
        self.xx += xc.T @ xc
        self.xy += xc.T @ yc

    def solve(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(coef (inputs, outputs), intercept (outputs,))`` of the ridge with ``alpha``."""
        if self.shift_x is None:
            raise ValueError("ridge: no rows were added")
        mean_x, mean_y = self.sum_x / self.n, self.sum_y / self.n
        gram = self.xx - self.n * np.outer(mean_x, mean_x)
        cross = self.xy - self.n * np.outer(mean_x, mean_y)
        gram.flat[:: gram.shape[0] + 1] += alpha
        try:
            coef = np.linalg.solve(gram, cross)
        except np.linalg.LinAlgError:  # singular (alpha 0): least squares, as sklearn falls back
            coef = np.linalg.lstsq(gram, cross, rcond=None)[0]
        intercept = (self.shift_y + mean_y) - (self.shift_x + mean_x) @ coef
        return coef, intercept
