"""Serving settings read from the environment (one place, documented defaults).

``TIDEMILL_MODEL_NAME``        endpoint name of the served model (``tidemill-forecaster``)
``TIDEMILL_MODEL_DIR``         model directory of ``python -m serving.predictor`` (``/mnt/models``)
``TIDEMILL_MAX_BODY_BYTES``    largest request body accepted (1 MiB)
``TIDEMILL_MAX_BATCH``         most history windows in one request (1000)
``TIDEMILL_MAX_HORIZON``       cap on the forecast horizon below the model's own maximum (none)
``TIDEMILL_PREDICTION_LOG_URL`` SQLAlchemy URL of the prediction log (none: not logged here)
``TIDEMILL_VARIANT``           variant label of a single-model predictor (``champion``)
``TIDEMILL_FEAST_FEATURE_SERVER_URL`` Feast's feature server (``tidemill features serve``); a
                              tabular request may then send an entity key instead of features
                              (none: entity lookup is off)
``TIDEMILL_FEAST_FEATURE_VIEW`` the feature view read there (``ai4i_machine``)
``TIDEMILL_FEAST_ENTITY_KEY``  its join key (``UDI``) and ``TIDEMILL_FEAST_ENTITY_KEY_TYPE``
                              (``int64`` or ``string``; ``int64``)
``TIDEMILL_FEAST_TIMEOUT_S``   timeout of one lookup (2.0 s)
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


@dataclass(frozen=True)
class FeatureLookup:
    """Where a tabular request's entity key is looked up (Feast's feature server)."""

    url: str
    view: str = "ai4i_machine"
    key: str = "UDI"
    key_type: str = "int64"
    timeout_s: float = 2.0

    @classmethod
    def from_env(cls) -> FeatureLookup | None:
        url = os.environ.get("TIDEMILL_FEAST_FEATURE_SERVER_URL")
        if not url:
            return None
        key_type = os.environ.get("TIDEMILL_FEAST_ENTITY_KEY_TYPE") or "int64"
        if key_type not in ("int64", "string"):
            raise ValueError(f"TIDEMILL_FEAST_ENTITY_KEY_TYPE must be int64 or string, got "
                             f"{key_type!r}")
        timeout = os.environ.get("TIDEMILL_FEAST_TIMEOUT_S") or "2.0"
        try:
            timeout_s = float(timeout)
        except ValueError as exc:
            raise ValueError(f"TIDEMILL_FEAST_TIMEOUT_S must be a number, got {timeout!r}") \
                from exc
        return cls(url.rstrip("/"), os.environ.get("TIDEMILL_FEAST_FEATURE_VIEW") or cls.view,
                   os.environ.get("TIDEMILL_FEAST_ENTITY_KEY") or cls.key, key_type, timeout_s)


def model_name() -> str:
    return os.environ.get("TIDEMILL_MODEL_NAME") or DEFAULT_MODEL_NAME


def prediction_log_url() -> str | None:
    return os.environ.get("TIDEMILL_PREDICTION_LOG_URL") or None


def parse_served(specs: list[str], endpoint: str) -> list[tuple[str, str]]:
    """``REGISTERED[=ENDPOINT]`` specs as (registered model, endpoint) pairs. A lone model
    without an endpoint is served as ``endpoint``; several are each served under their
    registered name unless named. Endpoints must differ."""
    pairs = []
    for spec in specs:
        registered, _, named = spec.partition("=")
        if not registered:
            raise ValueError(f"--model {spec!r}: expected REGISTERED[=ENDPOINT]")
        pairs.append((registered, named or (endpoint if len(specs) == 1 else registered)))
    endpoints = [e for _, e in pairs]
    for name in set(endpoints):
        if endpoints.count(name) > 1:
            raise ValueError(f"endpoint {name!r} is given to more than one model: {specs}")
    if len({r for r, _ in pairs}) < len(pairs):
        raise ValueError(f"a registered model is named twice: {specs}")
    return pairs
