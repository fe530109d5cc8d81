"""The one interface every forecaster implements, plus conformal intervals shared by all.

Models work on scaled, gap-free target series (1-D float arrays). The preprocessor
(``pipelines.preprocess``) does imputation and scaling per series before, and the inverse after.

*Global* models (``local = False``) fit one model across every series: ``fit`` takes one series
or a list of series (a panel; windows never cross from one series into another). *Local*
models (``local = True``: ARIMA) fit one series; ``pipelines.models.per_series.PerSeries``
holds one of them per series.

Shapes:
- ``fit(y)``: ``y`` is the training series, shape ``(n,)``, or a list of such series.
- ``predict(histories, last_ds)``: ``histories`` has shape ``(n_windows, L)`` with
  ``L >= min_history``; the most recent value is last. ``last_ds`` (optional) holds the
  timestamp of each window's last value, shape ``(n_windows,)``, ``datetime64[ns]``, for
  models with calendar features. Returns ``(n_windows, horizon)`` point forecasts.
- ``forecast_origins(y, origins, ds)``: forecasts made at each origin index ``o`` from
  ``y[:o]`` (the first forecast step is ``y[o]``). The default slices windows and calls
  ``predict``; models with a faster exact path (ARIMA's Kalman filter) override it.

Exogenous regressors (``pipelines.exogenous``): models with ``uses_exog`` take, at ``fit``,
``xh`` (one ``(n, k_h)`` array of historical regressors per series) and ``xf`` (one
``(n, k_f)`` array of future regressors per series), and at ``predict`` ``xh`` as
``(n_windows, exog_lags, k_h)`` (the rows up to each window's end) and ``xf`` as
``(n_windows, horizon, k_f)`` (the rows of the forecast steps). The others ignore regressors.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Panel = np.ndarray | list[np.ndarray]
"""One series, or a list of series (each 1-D)."""


def as_panel(
    y: Panel, ds: np.ndarray | list[np.ndarray | None] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """``(series, timestamps)`` as two lists, from one series or a list of series."""
    if isinstance(y, list | tuple):
        ys = [np.asarray(v, dtype=float) for v in y]
        dss = list(ds) if ds is not None else [None] * len(ys)
    else:
        ys, dss = [np.asarray(y, dtype=float)], [ds]
    if len(dss) != len(ys):
        raise ValueError(f"{len(dss)} timestamp arrays for {len(ys)} series")
    for k, (v, t) in enumerate(zip(ys, dss, strict=True)):
        if t is not None and len(t) != len(v):
            raise ValueError(f"series {k}: {len(t)} timestamps for {len(v)} values")
    return ys, dss


def conformal_halfwidth(errors: np.ndarray, level: float) -> np.ndarray:
    """Per-step split-conformal half-width from absolute errors ``(n_windows, horizon)``: the
    ``level`` quantile with the finite-sample correction ceil((n+1)*level)/n."""
    n = errors.shape[0]
    if n < 2:
        raise ValueError("conformal calibration needs at least 2 validation windows")
    q = min(1.0, np.ceil((n + 1) * level) / n)
    return np.quantile(errors, q, axis=0, method="higher")


class Forecaster(ABC):
    """Base class: subclasses set ``name`` and implement fit/predict/min_history/_save/_load."""

    name: ClassVar[str]
    local: ClassVar[bool] = False
    uses_exog: ClassVar[bool] = False

    def __init__(
        self, horizon: int, level: float = 0.9, freq: str = "h", seed: int = 0, **params: Any
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"interval level must be in (0, 1), got {level}")
        self.horizon = int(horizon)
        self.level = float(level)
        self.freq = freq
        self.seed = int(seed)
        self.params: dict[str, Any] = dict(params)
        # Half-width of the conformal interval per horizon step, set by calibrate().
        self.interval_halfwidth: np.ndarray | None = None

    # ----- what each model implements -------------------------------------------------------
    @property
    @abstractmethod
    def min_history(self) -> int:
        """Fewest past values ``predict`` needs in each window."""

    @abstractmethod
    def fit(self, y: Panel, ds: np.ndarray | list[np.ndarray | None] | None = None) -> Forecaster:
        """Fit on the training series ``y`` (or a list of series, global models only;
        timestamps ``ds`` optional); return self."""

    @abstractmethod
    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        """Point forecasts, shape ``(n_windows, horizon)``."""

    @abstractmethod
    def _save(self, path: Path) -> None:
        """Write model-specific files into the directory ``path``."""

    @abstractmethod
    def _load(self, path: Path) -> None:
        """Read what ``_save`` wrote."""

    # ----- shared behaviour -----------------------------------------------------------------
    @property
    def exog_inputs(self) -> tuple[int, int]:
        """Historical and future regressor columns the fitted model takes ((0, 0): none)."""
        k_h, k_f = self.params.get("exog") or (0, 0)
        return int(k_h), int(k_f)

    @property
    def exog_lags(self) -> int:
        """Past rows of the historical regressors each window needs (0 without them)."""
        return int(self.params.get("exog_lags", 1)) if self.exog_inputs[0] else 0

    def _exog_fit(self, n_series: int, xh: Any, xf: Any) -> tuple[list, list]:
        """Per-series regressor lists (None entries without), recording their widths."""
        xhs = list(xh) if xh is not None else [None] * n_series
        xfs = list(xf) if xf is not None else [None] * n_series
        if len(xhs) != n_series or len(xfs) != n_series:
            raise ValueError(f"regressors of {len(xhs)}/{len(xfs)} series for {n_series}")
        self.params.pop("exog", None)
        if xh is not None or xf is not None:
            self.params["exog"] = [
                0 if xh is None else int(np.shape(xhs[0])[1]),
                0 if xf is None else int(np.shape(xfs[0])[1]),
            ]
        return xhs, xfs

    def _check_exog(self, n: int, xh: Any, xf: Any) -> tuple[Any, Any]:
        """``xh``/``xf`` of ``n`` windows as float arrays of the fitted widths."""
        k_h, k_f = self.exog_inputs
        shapes = {"xh": (n, self.exog_lags, k_h), "xf": (n, self.horizon, k_f)}
        out = []
        for name, value, k in (("xh", xh, k_h), ("xf", xf, k_f)):
            if not k:
                out.append(None)
                continue
            arr = None if value is None else np.asarray(value, dtype=float)
            want = shapes[name]
            if arr is None or arr.shape[0] != n or arr.shape[2:] != want[2:] or \
                    arr.shape[1] < want[1]:
                got = None if arr is None else arr.shape
                raise ValueError(f"{self.name} was fitted with regressors: {name} must have "
                                 f"shape {want}, got {got}")
            out.append(arr[:, -want[1]:] if name == "xh" else arr[:, : want[1]])
        return out[0], out[1]

    def _check_history(self, histories: np.ndarray) -> np.ndarray:
        """``histories`` as a 2-D float array; raise if windows are shorter than needed."""
        histories = np.atleast_2d(np.asarray(histories, dtype=float))
        if histories.ndim != 2 or histories.shape[1] < self.min_history:
            raise ValueError(
                f"{self.name} needs at least {self.min_history} past values per window, "
                f"got histories of shape {histories.shape}"
            )
        return histories

    def forecast_origins(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """Forecasts from each origin index (using ``y[:origin]``), shape ``(len, horizon)``."""
        origins = np.asarray(origins, dtype=int)
        window = self.min_history
        if origins.size and origins.min() < window:
            raise ValueError(f"origin {origins.min()} leaves fewer than {window} history values")
        windows = sliding_window_view(np.asarray(y, dtype=float), window)[origins - window]
        last_ds = None if ds is None else np.asarray(ds)[origins - 1]
        return self.predict(windows, last_ds)

    def calibrate(
        self, y: np.ndarray, origins: np.ndarray, ds: np.ndarray | None = None
    ) -> np.ndarray:
        """Split-conformal intervals from residuals at ``origins`` (validation data, not train).

        Stores and returns the per-step half-width: the ``level`` quantile of absolute errors,
        with the finite-sample correction ceil((n+1)*level)/n.
        """
        origins = np.asarray(origins, dtype=int)
        preds = self.forecast_origins(y, origins, ds)
        actual = sliding_window_view(np.asarray(y, dtype=float), self.horizon)[origins]
        self.interval_halfwidth = conformal_halfwidth(np.abs(actual - preds), self.level)
        return self.interval_halfwidth

    def predict_intervals(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None, ids: Any = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecast with lower and upper bounds, each ``(n_windows, horizon)``.

        ``ids`` (the series of each window) matters only to per-series models; ``xh``/``xf``
        only to models fitted with regressors."""
        exog = {"xh": xh, "xf": xf} if any(self.exog_inputs) else {}
        point = self.predict(histories, last_ds, **exog)
        if self.interval_halfwidth is None:
            raise RuntimeError(f"{self.name}: intervals need calibrate() on validation data")
        return point, point - self.interval_halfwidth, point + self.interval_halfwidth

    def save(self, path: str | Path) -> None:
        """Save the model and its interval calibration into a directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "horizon": self.horizon,
            "level": self.level,
            "freq": self.freq,
            "seed": self.seed,
            "params": self.params,
            "interval_halfwidth": (
                None if self.interval_halfwidth is None else self.interval_halfwidth.tolist()
            ),
        }
        (path / "forecaster.json").write_text(json.dumps(meta, indent=2))
        self._save(path)

    @classmethod
    def load(cls, path: str | Path) -> Forecaster:
        """Load a forecaster saved with ``save`` (any registered model class)."""
        from pipelines.models.registry import get_model_class

        path = Path(path)
        meta = json.loads((path / "forecaster.json").read_text())
        if meta.get("per_series"):
            from pipelines.models.per_series import PerSeries

            return PerSeries.load_dir(path, meta)
        if meta.get("ensemble"):
            from pipelines.models.ensemble import Ensemble

            return Ensemble.load_dir(path, meta)
        model_cls = get_model_class(meta["name"])
        model = model_cls(
            horizon=meta["horizon"],
            level=meta["level"],
            freq=meta["freq"],
            seed=meta["seed"],
            **meta["params"],
        )
        if meta["interval_halfwidth"] is not None:
            model.interval_halfwidth = np.asarray(meta["interval_halfwidth"], dtype=float)
        model._load(path)
        return model
