"""Large V1 forecast bodies decoded by simdjson straight into arrays.

The body nearly every client sends - windows of one length, numbers for values and
``YYYY-MM-DDTHH:MM:SS`` strings for timestamps - comes out of simdjson (pysimdjson's lazy
documents) as one float64 buffer per window and the raw bytes of each timestamp list. For a
batch of 100 windows that skips the ~5,000 Python floats and strings ``orjson.loads`` makes
and the passes that turn them back into arrays. Any other body, and every body with an error,
gives None: ``protocol.parse_v1`` then parses it (and names the error), so both paths accept
the same bodies with the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import simdjson

from serving.config import Limits
from serving.protocol import (
    _OPEN,
    ForecastRequest,
    RequestError,
    WindowGroup,
    _check_window_block,
    _horizon,
    _text,
    caller_of,
    iso_json_arrays,
)

MIN_BYTES = 16 * 1024  # smaller bodies: orjson's path costs as little
_ROOT_KEYS = ("instances", "parameters", "horizon", "user_id", "model_version")
_MISSING = object()
_parser = simdjson.Parser()


def _where(i: int) -> str:
    return f"instances[{i}]"


def parse_v1_large(raw: bytes, headers: Mapping[str, str], limits: Limits
                   ) -> ForecastRequest | None:
    """``parse_v1(orjson.loads(raw), headers, limits)`` for a canonical body of at least
    ``MIN_BYTES``; None for any other body."""
    global _parser
    if len(raw) < MIN_BYTES:
        return None
    try:
        try:
            doc = _parser.parse(raw)  # ValueError when not JSON (orjson then names the problem)
        except RuntimeError:  # a document of an earlier request is still referenced somewhere
            _parser = simdjson.Parser()
            doc = _parser.parse(raw)
        return _request(raw, doc, headers, limits)
    except (RequestError, TypeError, ValueError, KeyError, AttributeError, RuntimeError):
        return None  # RuntimeError: simdjson's DEPTH_ERROR among others


def _request(raw: bytes, doc: Any, headers: Mapping[str, str],
             limits: Limits) -> ForecastRequest | None:
    if type(doc) is not simdjson.Object:
        return None
    root = {key: doc.get(key) for key in _ROOT_KEYS if key in doc}
    instances = root.get("instances")
    # an unknown or repeated name (its value is ambiguous) goes the long way
    if (type(instances) is not simdjson.Array or len(root) != len(doc)
            or not 0 < len(instances) <= limits.max_batch):
        return None
    values, lengths, stamps, series_ids = [], [], [], []
    for inst in instances:
        series_id = inst.get("series_id", _MISSING)  # TypeError for anything but an object
        if len(inst) != (2 if series_id is _MISSING else 3):
            return None
        if series_id is _MISSING:
            series_id = None
        elif type(series_id) is not str and series_id is not None:
            return None
        series_ids.append(series_id)
        window = inst["values"]
        lengths.append(len(window))
        values.append(window.as_buffer(of_type="d"))  # numbers only, else TypeError
        stamps.append(inst["timestamps"].mini)
    rows, width = len(stamps), lengths[0]
    # ``as_buffer`` flattens nested lists: no "[" but the instances' and each window's two
    if (set(lengths) != {width}
            or np.count_nonzero(np.frombuffer(raw, np.uint8) == _OPEN) != 1 + 2 * rows):
        return None
    ds = iso_json_arrays(b"".join(stamps), rows, width)
    if ds is None:
        return None
    block = np.frombuffer(bytearray().join(values), np.float64).reshape(rows, width)
    _check_window_block(block, ds, _where)
    params = root.get("parameters")
    if params is None:
        params = {}
    elif type(params) is simdjson.Object:
        params = params.as_dict()
    else:
        return None
    return ForecastRequest(
        groups=[WindowGroup(np.arange(rows), block, ds)],
        n_windows=rows,
        series_ids=series_ids,
        horizon=_horizon(params.get("horizon", root.get("horizon")), "parameters.horizon",
                         limits),
        caller=caller_of(root.get("user_id"), headers, "user_id"),
        model_version=_text(root.get("model_version"), "model_version"),
        field_prefix="instances",
    )
