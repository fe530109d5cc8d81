"""LSTM direct multi-step forecaster (Keras 3 on TensorFlow, CPU).

This is the only module that imports TensorFlow; the registry imports it lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import tensorflow as tf

from pipelines.models.base import Forecaster, Panel, as_panel

# Windows per inference call: bounds memory when forecasting thousands of origins.
PREDICT_CHUNK = 4096


def _configure_tensorflow() -> None:
    """Two CPU threads and deterministic kernels (settable only before TF starts its runtime)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # the runtime is already initialised; the first setting stays
    tf.config.experimental.enable_op_determinism()


_configure_tensorflow()


class LSTMForecaster(Forecaster):
    """LSTM over the last ``lookback`` values minus the last one, Dense(horizon) direct output,
    last value added back (the NLinear normalisation).

    Hyper-parameters (defaults): ``lookback`` (96), ``units`` (64), ``layers`` (1 or 2; 1),
    ``dropout`` (0.0, input dropout of each LSTM layer), ``learning_rate`` (1e-3, Adam),
    ``epochs`` (20), ``batch_size`` (128), ``patience`` (3). Early stopping watches the MSE on
    the last 10% of the training windows (chronological) and restores the best weights.
    Training is seeded from ``seed`` and deterministic. Intervals are conformal.
    """

    name = "lstm"

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
    def min_fit_rows(self) -> int:
        """Rows ``fit`` needs in the longest series: ten windows of lookback + horizon."""
        return self.lookback + self.horizon + 9

    def _build(self) -> keras.Model:
        units = int(self.params.get("units", 64))
        dropout = float(self.params.get("dropout", 0.0))
        inputs = keras.Input(shape=(self.lookback, 1))
        x = inputs
        for i in range(self.layers):
            x = keras.layers.LSTM(units, dropout=dropout, return_sequences=i < self.layers - 1)(x)
        model = keras.Model(inputs, keras.layers.Dense(self.horizon)(x))
        lr = float(self.params.get("learning_rate", 1e-3))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="mse")
        return model

    def _set_model(self, model: keras.Model) -> None:
        """Use ``model``, with one inference graph traced for any batch size."""
        self.model = model
        spec = tf.TensorSpec((None, self.lookback, 1), tf.float32)
        self._infer = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def fit(self, y: Panel, ds: Any = None) -> LSTMForecaster:
        ys, _ = as_panel(y, ds)
        need = self.min_fit_rows
        if max(len(v) for v in ys) < need:
            raise ValueError(
                f"lstm needs at least lookback+horizon+9={need} values in a series, got "
                f"{max(len(v) for v in ys)}"
            )
        width = self.lookback + self.horizon
        windows = np.concatenate([sliding_window_view(v, width) for v in ys if len(v) >= width])
        last = windows[:, self.lookback - 1 : self.lookback]
        x = (windows[:, : self.lookback] - last)[..., None].astype(np.float32)
        target = (windows[:, self.lookback :] - last).astype(np.float32)
        keras.utils.set_random_seed(self.seed)
        model = self._build()
        stop = keras.callbacks.EarlyStopping(
            patience=int(self.params.get("patience", 3)), restore_best_weights=True
        )
        model.fit(
            x,
            target,
            epochs=int(self.params.get("epochs", 20)),
            batch_size=int(self.params.get("batch_size", 128)),
            validation_split=0.1,
            callbacks=[stop],
            verbose=0,
        )
        self._set_model(model)
        return self

    def predict(self, histories: np.ndarray, last_ds: np.ndarray | None = None) -> np.ndarray:
        if self._infer is None:
            raise RuntimeError("lstm: call fit() or load() before predict()")
        window = self._check_history(histories)[:, -self.lookback :]
        last = window[:, -1:]
        x = (window - last)[..., None].astype(np.float32)
        out = [
            self._infer(x[i : i + PREDICT_CHUNK]).numpy() for i in range(0, len(x), PREDICT_CHUNK)
        ]
        return np.concatenate(out).astype(np.float64) + last

    def _save(self, path: Path) -> None:
        self.model.save(path / "lstm.keras")

    def _load(self, path: Path) -> None:
        self._set_model(keras.models.load_model(path / "lstm.keras", compile=False))
