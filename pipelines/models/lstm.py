"""LSTM direct multi-step forecaster (Keras 3 on TensorFlow, CPU).

TensorFlow comes from ``keras_runtime``; the registry imports this module lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.exogenous import future_windows, history_windows
from pipelines.models.base import Forecaster, Panel, as_panel
from pipelines.models.keras_runtime import PREDICT_CHUNK, keras, tf


class LSTMForecaster(Forecaster):
    """LSTM over the last ``lookback`` values minus the last one, Dense(horizon) direct output,
    last value added back (the NLinear normalisation).

    Hyper-parameters (defaults): ``lookback`` (96), ``units`` (64), ``layers`` (1 or 2; 1),
    ``dropout`` (0.0, input dropout of each LSTM layer), ``learning_rate`` (1e-3, Adam),
    ``epochs`` (20), ``batch_size`` (128), ``patience`` (3). Early stopping watches the MSE on
    the last 10% of the training windows (chronological) and restores the best weights.
    Training is seeded from ``seed`` and deterministic. Intervals are conformal.

    Regressors (``pipelines.exogenous``), when given at ``fit``:
    - historical ones are extra input channels of the window: row ``t`` of the LSTM's input is
      ``y[t] - y_last`` beside each historical regressor at ``t``, over the whole lookback
      (``exog_lags`` is the lookback);
    - future ones enter a per-step head added to the direct output: for each forecast step
      ``s``, ``Dense(1)(relu(Dense(units)([h, xf[s]])))``, where ``h`` is the LSTM's last
      state and ``xf[s]`` the future regressors of step ``s``. The head is shared by every
      step, so its size does not grow with the horizon (a flat ``horizon * k_f`` input to
      ``Dense(horizon)`` would at 720 steps), and seeing ``h`` lets a regressor's effect depend
      on the recent history. ``Dense(horizon)(h)`` still gives each step its own baseline.
    Without regressors the network is the plain one above, unchanged.
    """

    name = "lstm"
    uses_exog = True

    def __init__(self, horizon: int, **kwargs: Any) -> None:
        super().__init__(horizon, **kwargs)
        if self.layers not in (1, 2):
            raise ValueError(f"lstm layers must be 1 or 2, got {self.layers}")
        self.model: keras.Model | None = None
        self._infer: tf.types.experimental.PolymorphicFunction | None = None

    @property
    def lookback(self) -> int:
        return int(self.params.get("lookback", 96))

    @property
    def layers(self) -> int:
        return int(self.params.get("layers", 1))

    @property
    def min_history(self) -> int:
        return self.lookback

    @property
    def exog_lags(self) -> int:
        """Historical regressors span the whole window (0 without them)."""
        return self.lookback if self.exog_inputs[0] else 0

    @property
    def min_fit_rows(self) -> int:
        """Rows ``fit`` needs in the longest series: ten windows of lookback + horizon."""
        return self.lookback + self.horizon + 9

    def _input_specs(self) -> list[tf.TensorSpec]:
        """The network's inputs: the window (value and historical channels), then the future
        regressors of each forecast step when the model takes them."""
        k_h, k_f = self.exog_inputs
        specs = [tf.TensorSpec((None, self.lookback, 1 + k_h), tf.float32)]
        if k_f:
            specs.append(tf.TensorSpec((None, self.horizon, k_f), tf.float32))
        return specs

    def _build(self) -> keras.Model:
        units = int(self.params.get("units", 64))
        dropout = float(self.params.get("dropout", 0.0))
        inputs = [keras.Input(shape=spec.shape[1:]) for spec in self._input_specs()]
        x = inputs[0]
        for i in range(self.layers):
            x = keras.layers.LSTM(units, dropout=dropout, return_sequences=i < self.layers - 1)(x)
        out = keras.layers.Dense(self.horizon)(x)
        if len(inputs) > 1:  # the per-step head of the future regressors
            steps = keras.layers.Concatenate()([keras.layers.RepeatVector(self.horizon)(x),
                                                inputs[1]])
            steps = keras.layers.Dense(units, activation="relu")(steps)
            steps = keras.layers.Reshape((self.horizon,))(keras.layers.Dense(1)(steps))
            out = keras.layers.Add()([out, steps])
        model = keras.Model(inputs if len(inputs) > 1 else inputs[0], out)
        lr = float(self.params.get("learning_rate", 1e-3))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="mse")
        return model

    def _set_model(self, model: keras.Model) -> None:
        """Use ``model``, with one inference graph traced for any batch size."""
        self.model = model
        specs = self._input_specs()
        if len(specs) > 1:
            self._infer = tf.function(lambda x, f: model([x, f], training=False),
                                      input_signature=specs)
        else:
            self._infer = tf.function(lambda x: model(x, training=False), input_signature=specs)

    def _inputs(self, windows: np.ndarray, xh: np.ndarray | None, xf: np.ndarray | None
                ) -> list[np.ndarray]:
        """The network's inputs for windows of ``lookback`` values: the window minus its last
        value beside the historical regressors ``(n, lookback, k_h)``, then the future ones
        ``(n, horizon, k_f)``."""
        x = (windows - windows[:, -1:])[..., None]
        if xh is not None:
            x = np.concatenate([x, xh], axis=-1)
        return [x.astype(np.float32)] + ([] if xf is None else [xf.astype(np.float32)])

    def fit(
        self, y: Panel, ds: Any = None, xh: Any = None, xf: Any = None
    ) -> LSTMForecaster:
        ys, _ = as_panel(y, ds)
        xhs, xfs = self._exog_fit(len(ys), xh, xf)
        need = self.min_fit_rows
        if max(len(v) for v in ys) < need:
            raise ValueError(
                f"lstm needs at least lookback+horizon+9={need} values in a series, got "
                f"{max(len(v) for v in ys)}"
            )
        width = self.lookback + self.horizon
        parts, targets = [], []
        for v, h, f in zip(ys, xhs, xfs, strict=True):
            if len(v) < width:
                continue
            windows = sliding_window_view(v, width)
            origins = np.arange(len(windows)) + self.lookback
            parts.append(self._inputs(
                windows[:, : self.lookback],
                None if h is None else history_windows(h, origins, self.lookback),
                None if f is None else future_windows(f, origins, self.horizon)))
            last = windows[:, self.lookback - 1 : self.lookback]
            targets.append((windows[:, self.lookback :] - last).astype(np.float32))
        x = [np.concatenate(inputs) for inputs in zip(*parts, strict=True)]
        target = np.concatenate(targets)
        keras.utils.set_random_seed(self.seed)
        model = self._build()
        stop = keras.callbacks.EarlyStopping(
            patience=int(self.params.get("patience", 3)), restore_best_weights=True
        )
        model.fit(
            x if len(x) > 1 else x[0],
            target,
            epochs=int(self.params.get("epochs", 20)),
            batch_size=int(self.params.get("batch_size", 128)),
            validation_split=0.1,
            callbacks=[stop],
            verbose=0,
        )
        self._set_model(model)
        return self

    def predict(
        self, histories: np.ndarray, last_ds: np.ndarray | None = None,
        xh: np.ndarray | None = None, xf: np.ndarray | None = None,
    ) -> np.ndarray:
        if self._infer is None:
            raise RuntimeError("lstm: call fit() or load() before predict()")
        window = self._check_history(histories)[:, -self.lookback :]
        xh, xf = self._check_exog(len(window), xh, xf)
        x = self._inputs(window, xh, xf)
        out = [
            self._infer(*(a[i : i + PREDICT_CHUNK] for a in x)).numpy()
            for i in range(0, len(window), PREDICT_CHUNK)
        ]
        return np.concatenate(out).astype(np.float64) + window[:, -1:]

    def _save(self, path: Path) -> None:
        self.model.save(path / "lstm.keras")

    def _load(self, path: Path) -> None:
        self._set_model(keras.models.load_model(path / "lstm.keras", compile=False))
