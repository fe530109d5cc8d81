"""A global MLP forecaster (Keras 3 on TensorFlow, CPU): NLinear's linear map plus a ReLU
trunk, fitted across every series on window-scaled inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.exogenous import future_windows, history_windows
from pipelines.models.base import Forecaster, Panel, as_panel
from pipelines.models.keras_runtime import PREDICT_CHUNK, keras, tf
from pipelines.models.window_scale import WindowScale

LOSSES = ("mae", "mse")


class MLPForecaster(Forecaster):
    """Direct multi-step MLP on the last ``lookback`` values relative to the last one:
    ``y_hat = (Dense(horizon)(z) + Dense(horizon)(relu-trunk(z))) * scale + x_last`` with
    ``z = (x - x_last) / scale``, so the network is NLinear plus a non-linear correction.

    Hyper-parameters (defaults):
    - ``lookback`` (336), ``units`` (512), ``layers`` (3 ReLU layers), ``dropout`` (0.0, after
      each), ``learning_rate`` (1e-3, Adam, halved when the training loss stalls for 2
      epochs), ``epochs`` (10), ``batch_size`` (1024).
    - ``loss`` (``mae``, or ``mse``): ``mae`` on scaled windows is MASE's numerator per window.
    - ``members`` (1): networks trained from consecutive seeds, their forecasts averaged (a
      seed ensemble, as N-BEATS does).
    - ``lookbacks`` (``[lookback]``): ``members`` networks for each of these lookbacks, all
      averaged (N-BEATS' ensemble over input lengths); the history needed is the longest.
    - ``window_scale``/``season``/``scale_offset``: as nlinear (``pipelines.models.window_scale``).
    - ``exog_lags`` (24): past values of each historical regressor in the input; future
      regressors enter at every forecast step (both flat beside the window, as nlinear's).
    - ``max_windows`` (500,000): training windows drawn (seeded, uniformly over every series'
      windows) when a panel has more, so memory is bounded whatever the number of series
      (each window is ``lookback + horizon`` float32 values plus its regressors).
    Training is seeded and deterministic; intervals are conformal.
    """

    name = "mlp"
    uses_exog = True

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        if self.loss not in LOSSES:
            raise ValueError(f"mlp loss must be one of {LOSSES}, got {self.loss!r}")
        for key in ("units", "layers", "epochs", "batch_size", "members", "max_windows"):
            if int(self.params.get(key, 1)) < 1:
                raise ValueError(f"mlp {key} must be at least 1, got {self.params[key]}")
        if not self.lookbacks or min(self.lookbacks) < 1:
            raise ValueError(f"mlp lookbacks must be positive, got {self.lookbacks}")
        self.scalers = {lb: WindowScale.from_params(self.name, self.params, lb)
                        for lb in self.lookbacks}
        self.nets: list[keras.Model] = []
        self._infer: list[tf.types.experimental.PolymorphicFunction] = []

    @property
    def lookbacks(self) -> list[int]:
        """The members' lookbacks: ``lookbacks``, or ``[lookback]`` (336)."""
        return [int(v) for v in self.params.get("lookbacks",
                                                [self.params.get("lookback", 336)])]

    @property
    def net_lookbacks(self) -> list[int]:
        """Each network's lookback, in the order of ``nets`` (``members`` per lookback)."""
        return [lb for lb in self.lookbacks for _ in range(self.members)]

    @property
    def loss(self) -> str:
        return str(self.params.get("loss", "mae"))

    @property
    def members(self) -> int:
        return int(self.params.get("members", 1))

    @property
    def min_history(self) -> int:
        return max(self.lookbacks)

    @property
    def exog_lags(self) -> int:
        return min(int(self.params.get("exog_lags", 24)), *self.lookbacks) \
            if self.exog_inputs[0] else 0

    def _inputs(self, x: np.ndarray, xh: np.ndarray | None, xf: np.ndarray | None,
                scale: np.ndarray) -> np.ndarray:
        """The network's input: the window minus its last value over its scale, then the
        regressors flat (float32)."""
        parts = [(x - x[:, -1:]) / scale]
        parts += [r.reshape(len(x), -1) for r in (xh, xf) if r is not None]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _build(self, width: int) -> keras.Model:
        units, layers = int(self.params.get("units", 512)), int(self.params.get("layers", 3))
        dropout = float(self.params.get("dropout", 0.0))
        inputs = keras.Input((width,))
        h = inputs
        for _ in range(layers):
            h = keras.layers.Dense(units, activation="relu")(h)
            if dropout:
                h = keras.layers.Dropout(dropout)(h)
        out = keras.layers.Add()([keras.layers.Dense(self.horizon)(inputs),
                                  keras.layers.Dense(self.horizon)(h)])
        model = keras.Model(inputs, out)
        lr = float(self.params.get("learning_rate", 1e-3))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=self.loss)
        return model

    def _windows(self, ys: list[np.ndarray], xhs: list, xfs: list, lookback: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and scaled targets of the training windows of ``lookback`` (default the
        longest) values (at most ``max_windows``)."""
        lookback = lookback or self.min_history
        need = lookback + self.horizon
        counts = np.array([max(len(v) - need + 1, 0) for v in ys])
        cap = int(self.params.get("max_windows", 500_000))
        keep = None
        if counts.sum() > cap:  # a seeded uniform draw over all windows, kept in order
            keep = np.sort(np.random.default_rng(self.seed).choice(counts.sum(), cap,
                                                                   replace=False))
        starts = np.concatenate([[0], np.cumsum(counts)])
        inputs, targets = [], []
        for k, (v, h, f) in enumerate(zip(ys, xhs, xfs, strict=True)):
            if not counts[k]:
                continue
            rows = np.arange(counts[k]) if keep is None else \
                keep[(keep >= starts[k]) & (keep < starts[k + 1])] - starts[k]
            if not len(rows):
                continue
            windows = sliding_window_view(v, need)[rows]
            origins = rows + lookback
            x = windows[:, :lookback]
            scale = self.scalers[lookback](x)
            inputs.append(self._inputs(
                x, None if h is None else history_windows(h, origins, self.exog_lags),
                None if f is None else future_windows(f, origins, self.horizon), scale))
            targets.append(((windows[:, lookback:] - x[:, -1:]) / scale)
                           .astype(np.float32))
        return np.concatenate(inputs), np.concatenate(targets)

    def fit(self, y: Panel, ds: Any = None, xh: Any = None, xf: Any = None) -> MLPForecaster:
        ys, _ = as_panel(y, ds)
        xhs, xfs = self._exog_fit(len(ys), xh, xf)
        need = self.min_history + self.horizon
        if max(len(v) for v in ys) < need:
            raise ValueError(f"mlp needs at least lookback+horizon={need} values in a series, "
                             f"got {max(len(v) for v in ys)}")
        nets: list[keras.Model] = []
        for lookback in self.lookbacks:
            x, target = self._windows(ys, xhs, xfs, lookback)
            for _ in range(self.members):
                keras.utils.set_random_seed(self.seed + len(nets))
                net = self._build(x.shape[1])
                net.fit(x, target, epochs=int(self.params.get("epochs", 10)),
                        batch_size=int(self.params.get("batch_size", 1024)), shuffle=True,
                        callbacks=[keras.callbacks.ReduceLROnPlateau("loss", factor=0.5,
                                                                     patience=2)],
                        verbose=0)
                nets.append(net)
            del x, target
        self._set_nets(nets)
        return self

    def _set_nets(self, nets: list[keras.Model]) -> None:
        """Use ``nets``, each with one inference graph traced for any batch size."""
        self.nets = nets
        self._infer = [tf.function(lambda x, n=net: n(x, training=False), input_signature=[
            tf.TensorSpec((None, net.input_shape[1]), tf.float32)]) for net in nets]

    def predict(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> np.ndarray:
        if not self._infer:
            raise RuntimeError("mlp: call fit() or load() before predict()")
        history = self._check_history(histories)
        xh, xf = self._check_exog(len(history), xh, xf)
        out = np.zeros((len(history), self.horizon))
        for lookback in self.lookbacks:
            x = history[:, -lookback:]
            scale = self.scalers[lookback](x)
            z = self._inputs(x, xh, xf, scale)
            for infer, own in zip(self._infer, self.net_lookbacks, strict=True):
                if own == lookback:
                    out += np.concatenate([infer(z[i : i + PREDICT_CHUNK]).numpy()
                                           for i in range(0, len(z), PREDICT_CHUNK)]) * scale
        return out / len(self._infer) + history[:, -1:]

    def _save(self, path: Path) -> None:
        for k, net in enumerate(self.nets):
            net.save(path / f"mlp_{k}.keras")

    def _load(self, path: Path) -> None:
        self._set_nets([keras.models.load_model(path / f"mlp_{k}.keras", compile=False)
                        for k in range(len(self.net_lookbacks))])
