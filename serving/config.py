"""Serving settings read from the environment (one place, documented defaults).

``TIDEMILL_MODEL_NAME``        endpoint name of the served model (``tidemill-forecaster``)
``TIDEMILL_MODEL_DIR``         model directory of ``python -m serving.predictor`` (``/mnt/models``)
``TIDEMILL_MAX_BODY_BYTES``    largest request body accepted (1 MiB)
``TIDEMILL_MAX_BATCH``         most history windows in one request (1000)
``TIDEMILL_MAX_HORIZON``       cap on the forecast horizon below the model's own maximum (none)
``TIDEMILL_PREDICTION_LOG_URL`` SQLAlchemy URL of the prediction log (none: not logged here)
``TIDEMILL_VARIANT``           variant label of a single-model predictor (``champion``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_MODEL_NAME = "tidemill-forecaster"


def _int_env(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Limits:
    """Request limits; every violation is answered with a 4xx naming the field and the limit."""

    max_body_bytes: int = 1 << 20
    max_batch: int = 1000
    max_horizon: int | None = None

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_body_bytes=_int_env("TIDEMILL_MAX_BODY_BYTES", 1 << 20),
            max_batch=_int_env("TIDEMILL_MAX_BATCH", 1000),
            max_horizon=_int_env("TIDEMILL_MAX_HORIZON", None),
        )


def model_name() -> str:
    return os.environ.get("TIDEMILL_MODEL_NAME") or DEFAULT_MODEL_NAME


def prediction_log_url() -> str | None:
    return os.environ.get("TIDEMILL_PREDICTION_LOG_URL") or None
