"""TensorFlow for the Keras models (``lstm``, ``mlp``): imported only by them, configured once.

Two CPU threads and deterministic kernels, settable only before TensorFlow starts its runtime;
the registry imports the Keras models lazily, so parsing a DAG or serving another model never
imports TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import tensorflow as tf

# Windows per inference call: bounds memory when forecasting thousands of origins.
PREDICT_CHUNK = 4096


def _configure() -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # the runtime is already initialised; the first setting stays
    tf.config.experimental.enable_op_determinism()


_configure()

__all__ = ["PREDICT_CHUNK", "keras", "tf"]
