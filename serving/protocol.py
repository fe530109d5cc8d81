"""Wire formats of a forecast request and response: KServe V1, Open Inference Protocol V2 and
the specification's ``/predict``. Pure parsing and formatting (numpy, no kserve import), shared
by the fast routes and the ``kserve.Model.predict`` path.

V1 ``POST /v1/models/{name}:predict``::

    {"instances": [{"timestamps": [...], "values": [...], "series_id": "s",
                    "exog": {"HUFL": [...]}, "future_exog": {"price": [...]}}],
     "parameters": {"horizon": 12}, "user_id": "caller-7", "model_version": "2"}
    -> {"predictions": [{"series_id", "timestamps", "mean", "lower", "upper"}],
        "model_name", "model_version", "variant", "request_id", "interval_level"}

V2 ``POST /v2/models/{name}/infer`` (``model_name`` in the response is the endpoint name,
``parameters.registered_model`` the registered one): inputs ``values`` (FP64/FP32
``[n, L]``), ``timestamps`` (BYTES ISO-8601 or INT64 epoch seconds, ``[n, L]``), optional
``exog.<column>`` (``[n, L]``) per historical regressor, ``future_exog.<column>`` (``[n, h]``)
per future regressor; ``parameters``: ``horizon``, ``user_id``, ``series_id``,
``model_version``. Outputs ``forecast``, ``lower``, ``upper`` (FP64 ``[n, h]``) and
``timestamps`` (BYTES ``[n, h]``); the response's ``model_version`` is the registered version
and ``parameters`` carry ``variant`` and ``request_id``. Inputs may come as binary tensor data
(the protocol's binary data extension: ``inference-header-content-length`` header, each input's
``parameters.binary_data_size``; ``v2_binary_body``); outputs are always JSON.

``POST /predict``: ``{"data": [[timestamp, value], ...], "exog": {column: [...]},
"future_exog": {column: [...]}, "model_version": null, "forecast_horizon": N, "user_id": ...}``
-> ``predictions``, ``confidence_intervals`` (``level``, ``lower``, ``upper``), ``timestamps``,
``model_version``, ``variant``, ``execution_time_ms``, ``request_id``.

Regressors (``pipelines.exogenous``) are named by column: ``exog`` holds each historical
regressor's values beside the history (one per history value), ``future_exog`` each future
regressor's values over the forecast steps (at least the horizon). The parser keeps them per
window; the served model checks them against what it was trained with and names the series
and column of a missing, short or non-numeric one (``serving.served_model``). Unnamed
exogenous blocks (``exog`` as ``[L][k]`` rows, V2 ``exog`` ``[n, L, k]``, extra ``data``
columns) are still accepted for models without regressors: checked for shape and counted.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np
import orjson

from serving.config import Limits

# numpy parses "...Z" / "+01:00" as UTC and warns that datetime64 has no timezone: expected.
warnings.filterwarnings("ignore", message="no explicit representation of timezones")

CALLER_HEADER = "x-user-id"
Where = Callable[[int], str]  # window position -> its field name in error messages
REQUEST_ID_HEADER = "x-request-id"


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: milliseconds since the epoch, then random bits.
    Ids made one after another sort together, so the prediction log's primary-key index grows
    at its end instead of at random pages (with uuid4 ids an insert into a log of 200k rows
    cost 75-90 us instead of 42 us, and kept growing with the log)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return f"{value:032x}"


class RequestError(ValueError):
    """A request Tidemill refuses: ``field`` names the input, ``status`` is the HTTP status."""

    def __init__(self, field: str, message: str, status: int = 400, kind: str = "bad_request"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field}


@dataclass
class WindowGroup:
    """Windows of equal length: rows of ``values``/``ds`` sit at ``index`` in the request."""

    index: np.ndarray
    values: np.ndarray
    ds: np.ndarray


@dataclass
class ForecastRequest:
    """A parsed, shape-checked request; model-specific limits are checked by the model."""

    groups: list[WindowGroup]
    n_windows: int
    series_ids: list[str | None]
    horizon: int | None
    caller: str | None
    model_version: str | None
    field_prefix: str
    exog_columns: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    regressors: list[Regressors] | None = None
    """Per window: its named regressors (None when no window names any)."""


@dataclass
class Regressors:
    """One window's named regressors as sent: column -> raw values."""

    exog: dict[str, Any] = field(default_factory=dict)
    future: dict[str, Any] = field(default_factory=dict)


@dataclass
class ForecastResult:
    """Forecasts of every window in request order, each array ``(n_windows, horizon)``."""

    ds: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    model_name: str
    model_version: str
    variant: str
    level: float
    request_id: str
    endpoint: str


# ----- shared checks --------------------------------------------------------------------------
def _horizon(raw: Any, field_name: str, limits: Limits) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (
            isinstance(raw, float) and not raw.is_integer()):  # NaN and infinities too
        raise RequestError(field_name, f"must be a positive integer, got {raw!r}")
    horizon = int(raw)
    if horizon < 1:
        raise RequestError(field_name, f"must be at least 1, got {horizon}")
    if limits.max_horizon is not None and horizon > limits.max_horizon:
        raise RequestError(
            field_name, f"{horizon} is above the configured maximum of {limits.max_horizon}"
        )
    return horizon


def _text(raw: Any, field_name: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise RequestError(field_name, f"must be a string, got {type(raw).__name__}")
    return str(raw)


def _batch_size(n: int, field_name: str, limits: Limits) -> None:
    if n == 0:
        raise RequestError(field_name, "needs at least one history window")
    if n > limits.max_batch:
        raise RequestError(
            field_name, f"{n} windows exceed the limit of {limits.max_batch}", status=413
        )


# ``YYYY-MM-DDTHH:MM:SS`` (or a space for the ``T``), the form nearly every client sends:
# parsed as one byte buffer instead of string by string (numpy's parser costs ~0.3 us each).
_ISO_FAST_MIN = 200  # below this many strings numpy's parser is the cheaper one


class _IsoRows:
    """Rows of one layout around a ``YYYY-MM-DDTHH:MM:SS`` string (``0`` marks a digit, ``?``
    any byte, other characters themselves), checked and read in whole-buffer passes."""

    def __init__(self, layout: str) -> None:
        self.size, self.at = len(layout), layout.index("0")
        # Per byte: the character subtracted (digits "0", others themselves) and the largest
        # allowed difference (9 for a digit, 0 for a fixed character, 255 for any byte).
        base = np.frombuffer(layout.replace("?", "\0").encode(), np.uint8)
        span = np.array([9 if c == "0" else 255 if c == "?" else 0 for c in layout], np.uint8)
        # Two-digit fields (ten times a digit plus the next) start at these bytes; each must
        # lie in [low, low + span] (every other byte: anything). Month and day count from 0.
        low, pair_span = np.zeros(self.size, np.uint8), np.full(self.size, 255, np.uint8)
        for at, lowest, highest in ((5, 1, 12), (8, 1, 31), (11, 0, 23), (14, 0, 59),
                                    (17, 0, 59)):
            low[self.at + at], pair_span[self.at + at] = lowest, highest - lowest
        self.rows = (base, span, low, pair_span)
        self.tiles = tuple(np.tile(row, 1024) for row in self.rows)

    def tiled(self, size: int) -> tuple[np.ndarray, ...]:
        """The per-byte rows repeated over ``size`` bytes, to compare in contiguous passes
        (a broadcast row of 20 bytes runs numpy's inner loop 20 bytes at a time)."""
        if self.tiles[0].size < size:
            reps = 1 << (size // self.size - 1).bit_length()
            self.tiles = tuple(np.tile(row, reps) for row in self.rows)
        return tuple(tile[:size] for tile in self.tiles)

    def nanoseconds(self, raw: bytes, count: int) -> np.ndarray | None:
        """Epoch nanoseconds of ``count`` rows, or None when any row has another form or an
        out-of-range field (spaces must already be ``T``)."""
        size = len(raw)
        if count == 0 or size != count * self.size:
            return None
        base, span, low, pair_span = self.tiled(size)
        digits = np.frombuffer(raw, np.uint8) - base  # uint8: below the base wraps high
        if not (digits <= span).all():
            return None
        pairs = np.empty(size, np.uint8)  # ten times each digit plus the next one
        np.multiply(digits[:-1], 10, out=pairs[:-1])
        np.add(pairs[:-1], digits[1:], out=pairs[:-1])
        pairs[-1] = 0
        pairs -= low
        if not (pairs <= pair_span).all():
            return None
        fields = pairs.reshape(count, self.size)[:, self.at :]
        year = fields[:, 0].astype(np.intp) * 100
        year += fields[:, 2]
        month = _YEAR_MONTH[year] + fields[:, 5]
        ns = fields[:, 8].astype(np.int64)  # day of the month, from 0
        if not (ns < _MONTH_LEN[month]).all():
            return None
        ns *= 24  # then hours, minutes, seconds, nanoseconds since the month began: in
        ns += fields[:, 11]  # place arithmetic, a third of the time of a table lookup each
        ns *= 60
        ns += fields[:, 14]
        ns *= 60
        ns += fields[:, 17]
        ns *= 10**9
        ns += _MONTH_START_NS[month]
        return ns


# datetime64[ns] covers 1677-09-21 .. 2262-04-11: the fast path takes the whole years inside,
# with each month's first day and length from numpy's own calendar. Months count from
# 1678-01; a year outside maps to 12 months of no days, past the end, that no day fits.
_FIRST_YEAR, _YEARS = 1678, 2262 - 1678
_MONTHS = np.arange(f"{_FIRST_YEAR}-01", f"{_FIRST_YEAR + _YEARS}-02", dtype="datetime64[M]")
_MONTH_DAYS = _MONTHS.astype("datetime64[D]").astype(np.int64)
_NS_DAY = 86_400 * 10**9
_MONTH_START_NS = np.append(_MONTH_DAYS[:-1] * _NS_DAY, np.zeros(12, np.int64))
_MONTH_LEN = np.append(np.diff(_MONTH_DAYS), np.zeros(12, np.int64))
_YEAR_MONTH = np.full(10_000, _YEARS * 12, np.intp)
_YEAR_MONTH[_FIRST_YEAR : _FIRST_YEAR + _YEARS] = np.arange(_YEARS) * 12
_NS_RANGE = (np.datetime64("1677-09-22", "us"), np.datetime64("2262-04-10", "us"))
_EPOCH_RANGE = tuple(int(t.astype("datetime64[s]").astype(np.int64)) for t in _NS_RANGE)
_LINES = _IsoRows("0000-00-00T00:00:00\n")  # strings joined by newlines
_IN_JSON = _IsoRows('"0000-00-00T00:00:00"?')  # items of a minified JSON array, with "," or "]"
_OPEN = ord("[")


def _iso_nanoseconds(text: str, count: int) -> np.ndarray | None:
    """Epoch nanoseconds of ``count`` strings joined by newlines, each ``YYYY-MM-DDTHH:MM:SS``,
    or None when any string has another form or an out-of-range field (the caller then uses
    numpy's parser, which names the error).

    With a newline after the last string too, the newlines land exactly on every 20th byte
    only if every string is 19 ASCII characters without a newline of its own. A space for
    the ``T`` becomes a ``T``; a space anywhere else becomes a ``T`` no other byte accepts.
    """
    try:
        raw = (text + "\n").encode("ascii")
    except UnicodeEncodeError:
        return None
    return _LINES.nanoseconds(raw.replace(b" ", b"T"), count)


def iso_json_arrays(raw: bytes, rows: int, width: int) -> np.ndarray | None:
    """``rows`` minified JSON arrays (simdjson's ``mini``) of ``width`` ``YYYY-MM-DDTHH:MM:SS``
    strings each, one after the other (``["…","…"]["…","…"]``), as ``datetime64[ns]`` of shape
    ``(rows, width)``; None for anything else.

    Past each array's ``[``, every item takes 22 bytes: the string in quotes, then ``,`` (or
    ``]`` after the last). With the 19 characters between two quotes free of quotes and
    backslashes, in valid JSON each such row can only be one string item of the array.
    """
    size = width * _IN_JSON.size + 1
    if len(raw) != rows * size:
        return None
    arrays = np.frombuffer(raw, np.uint8).reshape(rows, size)
    if not (arrays[:, 0] == _OPEN).all():
        return None
    items = arrays[:, 1:].tobytes()
    ns = _IN_JSON.nanoseconds(items.replace(b" ", b"T"), rows * width)
    return None if ns is None else ns.view("datetime64[ns]").reshape(rows, width)


def _fast_timestamps(raw: Any) -> np.ndarray | None:
    """A list (or a list of equal-length lists) of ``YYYY-MM-DDTHH:MM:SS`` strings as
    ``datetime64[ns]``, or None for anything else."""
    if not isinstance(raw, list) or not raw:
        return None
    nested = type(raw[0]) is list
    if nested:
        width = len(raw[0])
        if set(map(type, raw)) != {list} or set(map(len, raw)) != {width}:
            return None
        shape: tuple[int, ...] = (len(raw), width)
    else:
        shape = (len(raw),)
    count = math.prod(shape)
    if count < _ISO_FAST_MIN:
        return None
    try:
        text = "\n".join(map("\n".join, raw)) if nested else "\n".join(raw)
    except TypeError:  # not all strings
        return None
    ns = _iso_nanoseconds(text, count)
    return None if ns is None else ns.view("datetime64[ns]").reshape(shape)


def parse_timestamps(raw: Any, field_name: str) -> np.ndarray:
    """ISO-8601 strings (or epoch seconds) to ``datetime64[ns]``, any shape."""
    fast = _fast_timestamps(raw)
    if fast is not None:
        return fast
    try:
        arr = np.asarray(raw)
        if arr.dtype.kind not in "iu":  # epoch seconds: range-checked below
            if arr.dtype.kind == "S":
                arr = arr.astype(str)
            if arr.dtype.kind != "U":
                raise ValueError
            parsed = arr.astype("datetime64[us]")
    except (ValueError, TypeError, OverflowError):
        raise RequestError(
            field_name, "must be ISO-8601 timestamp strings or integer epoch seconds"
        ) from None
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < _EPOCH_RANGE[0] or arr.max() > _EPOCH_RANGE[1]):
            raise RequestError(field_name, f"epoch seconds must lie between {_EPOCH_RANGE[0]} "
                                           f"and {_EPOCH_RANGE[1]} (1677-09-22 .. 2262-04-10)")
        return arr.astype("datetime64[s]").astype("datetime64[ns]")
    if parsed.size and ((parsed < _NS_RANGE[0]).any() or (parsed > _NS_RANGE[1]).any()):
        raise RequestError(field_name, "timestamps must lie between 1677-09-22 and 2262-04-10")
    return parsed.astype("datetime64[ns]")


def _values(raw: Any, field_name: str) -> np.ndarray:
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(field_name, "must be numbers") from None
    return arr


def _window_values(values_lists: Sequence[list[Any]]) -> np.ndarray | None:
    """Windows known to be lists of one length as a ``(windows, length)`` array, or None when
    an item is not a number (``_values`` then names the problem). One pass over the items,
    converting each as ``np.asarray`` does, at two thirds of its cost (it first works out the
    nested lists' shape)."""
    rows, width = len(values_lists), len(values_lists[0])
    try:
        flat = np.fromiter(chain.from_iterable(values_lists), np.float64, count=rows * width)
    except (ValueError, TypeError, OverflowError):
        return None
    return flat.reshape(rows, width)


def _check_window_block(values: np.ndarray, ds: np.ndarray, where: Where) -> None:
    """Finite values, one timestamp per value, timestamps strictly increasing (per row)."""
    if ds.shape != values.shape:
        raise RequestError(
            f"{where(0)}.timestamps",
            f"{ds.shape[-1]} timestamps for {values.shape[-1]} values",
        )
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise RequestError(f"{where(row)}.values[{col}]", "is NaN, inf or missing")
    if values.shape[1] > 1:
        steps = ds[:, 1:] > ds[:, :-1]
        if not steps.all():
            row, col = np.argwhere(~steps)[0]
            raise RequestError(
                f"{where(row)}.timestamps[{col + 1}]",
                "timestamps must be strictly increasing (oldest first)",
            )


def _window_lengths(
    values_lists: Sequence[Any], ts_lists: Sequence[Any], where: Where
) -> list[int]:
    """The length of each window; raises for the first window that is not a non-empty list
    of values with a list of as many timestamps."""
    if set(map(type, values_lists)) == {list} == set(map(type, ts_lists)):
        lengths = list(map(len, values_lists))
        if lengths == list(map(len, ts_lists)) and 0 not in lengths:
            return lengths
    lengths = []
    for i, (v, t) in enumerate(zip(values_lists, ts_lists, strict=True)):
        if not isinstance(v, list):
            raise RequestError(f"{where(i)}.values", "must be a list of numbers")
        if not isinstance(t, list):
            raise RequestError(f"{where(i)}.timestamps", "must be a list of timestamps")
        if len(t) != len(v):
            raise RequestError(f"{where(i)}.timestamps", f"{len(t)} timestamps for {len(v)} values")
        if not v:
            raise RequestError(f"{where(i)}.values", "is empty")
        lengths.append(len(v))
    return lengths


def _groups(
    values_lists: Sequence[Any], ts_lists: Sequence[Any], where: Where
) -> list[WindowGroup]:
    """Build equal-length window groups from per-window lists (usually one group)."""
    lengths = _window_lengths(values_lists, ts_lists, where)
    if len(set(lengths)) == 1:  # one group: the lists as they are
        return [_group(np.arange(len(lengths)), values_lists, ts_lists, where)]
    by_length: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_length.setdefault(n, []).append(i)
    return [
        _group(np.asarray(rows), [values_lists[i] for i in rows], [ts_lists[i] for i in rows],
               lambda r, rows=rows: where(rows[r]))
        for rows in by_length.values()
    ]


def _group(index: np.ndarray, values_lists: Sequence[Any], ts_lists: Sequence[Any],
           where: Where) -> WindowGroup:
    """The windows at ``index`` (all of one length); ``where`` names row ``r`` of the group."""
    values = _window_values(values_lists)
    if values is None:
        values = _by_window(_values, values_lists, where, "values", "numbers")
    try:
        ds = parse_timestamps(ts_lists, f"{where(0)}.timestamps")
    except RequestError:
        ds = None
    if ds is None or ds.ndim != 2:
        ds = _by_window(parse_timestamps, ts_lists, where, "timestamps", "timestamps")
    _check_window_block(values, ds, where)
    return WindowGroup(index, values, ds)


def _by_window(parse: Callable[[Any, str], np.ndarray], lists: Sequence[Any], where: Where,
               field_name: str, items: str) -> np.ndarray:
    """Windows of one length parsed one by one (slower), to name the first at fault."""
    rows = []
    for r, raw in enumerate(lists):
        row = parse(raw, f"{where(r)}.{field_name}")
        if row.ndim != 1:
            raise RequestError(f"{where(r)}.{field_name}", f"must be a flat list of {items}")
        rows.append(row)
    return np.stack(rows)


def _exog(raw: Any, length: int, field_name: str) -> int:
    """Check an exogenous block ``[L][k]`` against the window length; return ``k``."""
    if raw is None:
        return 0
    arr = _values(raw, field_name)
    if arr.ndim != 2 or arr.shape[0] != length:
        raise RequestError(field_name, f"must be {length} rows of exogenous values")
    if not np.isfinite(arr).all():
        raise RequestError(field_name, "contains NaN, inf or missing values")
    return int(arr.shape[1])


def _named(raw: Any, field_name: str) -> dict[str, Any]:
    """A ``{column: [values]}`` object of regressors (values checked by the served model)."""
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise RequestError(field_name, "must be an object of column name -> list of values")
    return raw


def _window_regressors(inst: Mapping[str, Any], where: str) -> Regressors:
    """The named regressors of one window (``exog`` as rows is the unnamed form: not here)."""
    prefix = f"{where}." if where else ""
    exog = inst.get("exog")
    return Regressors(
        exog=_named(exog, f"{prefix}exog") if isinstance(exog, dict) else {},
        future=_named(inst["future_exog"], f"{prefix}future_exog")
        if inst.get("future_exog") is not None else {},
    )


def caller_of(body_value: Any, headers: Mapping[str, str], field_name: str) -> str | None:
    return _text(body_value, field_name) or headers.get(CALLER_HEADER) or None


def _series_ids(instances: list[dict[str, Any]], where: Where) -> list[str | None]:
    ids = list(map(dict.get, instances, repeat("series_id")))
    if set(map(type, ids)) <= {str, type(None)}:
        return ids
    return [_text(s, f"{where(i)}.series_id") for i, s in enumerate(ids)]


# ----- V1 -------------------------------------------------------------------------------------
def parse_v1(body: Any, headers: Mapping[str, str], limits: Limits) -> ForecastRequest:
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object with 'instances'")
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise RequestError("instances", "must be a list of history windows")
    _batch_size(len(instances), "instances", limits)
    def where(i: int) -> str:
        return f"instances[{i}]"

    if set(map(type, instances)) != {dict}:
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RequestError(where(i), "must be an object with 'timestamps' and 'values'")
    groups = _groups(
        list(map(dict.get, instances, repeat("values"))),
        list(map(dict.get, instances, repeat("timestamps"))),
        where,
    )
    exog, regressors = 0, None
    if any(map(dict.__contains__, instances, repeat("exog"))) or \
            any(map(dict.__contains__, instances, repeat("future_exog"))):
        regressors = [_window_regressors(inst, where(i)) for i, inst in enumerate(instances)]
        for i, inst in enumerate(instances):
            if "exog" in inst and not isinstance(inst["exog"], dict):
                exog = max(exog, _exog(inst["exog"], len(inst["values"]), f"{where(i)}.exog"))
        exog = max([exog, *(len(r.exog) + len(r.future) for r in regressors)])
        if not any(r.exog or r.future for r in regressors):
            regressors = None
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("parameters", "must be an object")
    raw_h = params.get("horizon", body.get("horizon"))
    return ForecastRequest(
        groups=groups,
        n_windows=len(instances),
        series_ids=_series_ids(instances, where),
        horizon=_horizon(raw_h, "parameters.horizon", limits),
        caller=caller_of(body.get("user_id"), headers, "user_id"),
        model_version=_text(body.get("model_version"), "model_version"),
        field_prefix="instances",
        exog_columns=exog,
        regressors=regressors,
    )


def _rows(values: np.ndarray) -> Any:
    """The rows of ``values`` for orjson, which writes the same bytes for a Python float as
    for a numpy one: short rows as lists (the per-array cost of numpy rows outweighs making
    the floats up to ~8 values a row), longer rows as numpy."""
    return values.tolist() if values.shape[1] <= 8 else values


def v1_response(result: ForecastResult, series_ids: list[str | None]) -> dict[str, Any]:
    stamps = np.datetime_as_string(result.ds, unit="s").tolist()
    predictions = [
        {"series_id": series_id, "timestamps": ts, "mean": mean, "lower": lower, "upper": upper}
        for series_id, ts, mean, lower, upper in zip(
            series_ids, stamps, _rows(result.yhat), _rows(result.lower), _rows(result.upper),
            strict=True,
        )
    ]
    return {
        "predictions": predictions,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "variant": result.variant,
        "request_id": result.request_id,
        "interval_level": result.level,
    }


# ----- V2 (Open Inference Protocol) -----------------------------------------------------------
V2_INPUTS = [
    {"name": "values", "datatype": "FP64", "shape": [-1, -1]},
    {"name": "timestamps", "datatype": "BYTES", "shape": [-1, -1]},
    {"name": "exog", "datatype": "FP64", "shape": [-1, -1, -1]},
]
V2_OUTPUTS = [
    {"name": "forecast", "datatype": "FP64", "shape": [-1, -1]},
    {"name": "lower", "datatype": "FP64", "shape": [-1, -1]},
    {"name": "upper", "datatype": "FP64", "shape": [-1, -1]},
    {"name": "timestamps", "datatype": "BYTES", "shape": [-1, -1]},
]


INFERENCE_HEADER_LENGTH = "inference-header-content-length"
_V2_NUMERIC = {name: np.dtype(code) for name, code in (
    ("FP64", "<f8"), ("FP32", "<f4"), ("FP16", "<f2"), ("INT64", "<i8"), ("INT32", "<i4"),
    ("INT16", "<i2"), ("INT8", "i1"), ("UINT64", "<u8"), ("UINT32", "<u4"), ("UINT16", "<u2"),
    ("UINT8", "u1"))}


def v2_binary_body(raw: bytes, header_length: str) -> Any:
    """A V2 request sent with the binary tensor data extension, as ``parse_v2`` takes it: the
    first ``header_length`` bytes are the JSON request; each input whose
    ``parameters.binary_data_size`` is set gets that many of the bytes that follow, in input
    order: numbers as a numpy array (little-endian), BYTES as strings (each a 4-byte
    little-endian length and its bytes). Timestamps sent as INT64 epoch seconds and values as
    FP64 then need no parsing at all."""
    field = INFERENCE_HEADER_LENGTH
    if not header_length.isdigit() or not 0 < int(header_length) <= len(raw):
        raise RequestError(field, f"must be the JSON part's length in bytes, 1 to {len(raw)}; "
                                  f"got {header_length!r}")
    start = int(header_length)
    try:
        body = orjson.loads(raw[:start])
    except orjson.JSONDecodeError as exc:
        raise RequestError("body", f"the JSON part is not valid JSON ({exc})") from None
    inputs = body.get("inputs") if isinstance(body, dict) else None
    for i, inp in enumerate(inputs if isinstance(inputs, list) else []):
        params = inp.get("parameters") if isinstance(inp, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        where = f"inputs[{i}].parameters.binary_data_size"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(where, f"must be a byte count, got {size!r}")
        if start + size > len(raw):
            raise RequestError(where, f"{size} bytes from byte {start} run past the body's end "
                                      f"at {len(raw)}")
        if "data" in inp:
            raise RequestError(f"inputs[{i}].data", "must be left out when binary_data_size "
                                                    "is given")
        inp["data"] = _binary_tensor(raw, start, size, inp.get("datatype"), f"inputs[{i}]")
        start += size
    if start != len(raw):
        raise RequestError("body", f"{len(raw) - start} bytes follow the last binary tensor")
    return body


def _binary_tensor(raw: bytes, start: int, size: int, datatype: Any, where: str) -> Any:
    """The ``size`` bytes of ``raw`` from ``start`` as a tensor's data (copied once)."""
    if datatype == "BYTES":
        chunk = raw[start:start + size]
        items, at = [], 0
        while at < len(chunk):
            if at + 4 > len(chunk):
                raise RequestError(f"{where}.data", "BYTES data ends inside a length prefix")
            length = int.from_bytes(chunk[at:at + 4], "little")
            at += 4
            if at + length > len(chunk):
                raise RequestError(f"{where}.data", "a BYTES element runs past its data")
            try:
                items.append(chunk[at:at + length].decode())
            except UnicodeDecodeError:
                raise RequestError(f"{where}.data", "BYTES elements must be UTF-8") from None
            at += length
        return items
    dtype = _V2_NUMERIC.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise RequestError(f"{where}.datatype", f"{datatype!r} is not a V2 numeric type or BYTES")
    if size % dtype.itemsize:
        raise RequestError(f"{where}.parameters.binary_data_size",
                           f"{size} bytes is not a whole number of {datatype} values")
    # a writable array of its own
    return np.frombuffer(raw, dtype, size // dtype.itemsize, start).copy()


def _v2_tensor(inp: Any, i: int) -> tuple[str, list[int], Any]:
    if not isinstance(inp, dict):
        raise RequestError(f"inputs[{i}]", "must be a tensor object")
    name, shape, data = inp.get("name"), inp.get("shape"), inp.get("data")
    if not isinstance(name, str):
        raise RequestError(f"inputs[{i}].name", "is required")
    if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
        raise RequestError(f"inputs[{i}].shape", "must be a list of non-negative integers")
    if not isinstance(data, list | np.ndarray):  # an array: sent as binary data
        raise RequestError(f"inputs[{i}].data", "must be a list")
    return name, shape, data


def _reshape(data: Any, shape: list[int], field_name: str, timestamps: bool) -> np.ndarray:
    arr = parse_timestamps(data, field_name) if timestamps else _values(data, field_name)
    if arr.size != math.prod(shape):
        raise RequestError(field_name, f"has {arr.size} elements, shape {shape} needs "
                                       f"{math.prod(shape)}")
    return arr.reshape(shape)


def parse_v2(body: Any, headers: Mapping[str, str], limits: Limits) -> ForecastRequest:
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON inference request object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("inputs", "must be a non-empty list of tensors")
    tensors = {}
    for i, inp in enumerate(inputs):
        name, shape, data = _v2_tensor(inp, i)
        tensors[name] = (i, shape, data)
    for needed in ("values", "timestamps"):
        if needed not in tensors:
            raise RequestError("inputs", f"tensor '{needed}' is missing")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("parameters", "must be an object")
    return v2_request(tensors, params, headers, limits)


def v2_request(
    tensors: Mapping[str, tuple[int, list[int], Any]],
    params: Mapping[str, Any],
    headers: Mapping[str, str],
    limits: Limits,
) -> ForecastRequest:
    """A request from V2 tensors ``name -> (position, shape, data)`` and parameters."""
    _, shape, data = tensors["values"]
    if len(shape) == 1:
        shape = [1, shape[0]]
    if len(shape) != 2:
        raise RequestError("inputs.values.shape", f"must be [n_windows, length], got {shape}")
    _batch_size(shape[0], "inputs.values.shape[0]", limits)
    if shape[1] == 0:
        raise RequestError("inputs.values.shape[1]", "history windows are empty")
    values = _reshape(data, shape, "inputs.values.data", timestamps=False)
    _, ts_shape, ts_data = tensors["timestamps"]
    if math.prod(ts_shape) != math.prod(shape):
        raise RequestError("inputs.timestamps.shape", f"must match values shape {shape}")
    ds = _reshape(ts_data, shape, "inputs.timestamps.data", timestamps=True)
    _check_window_block(values, ds, lambda r: f"inputs.window[{r}]")
    exog = 0
    if "exog" in tensors:
        _, ex_shape, ex_data = tensors["exog"]
        if len(ex_shape) != 3 or ex_shape[:2] != shape:
            raise RequestError("inputs.exog.shape", f"must be [{shape[0]}, {shape[1]}, k]")
        ex = _reshape(ex_data, ex_shape, "inputs.exog.data", timestamps=False)
        if not np.isfinite(ex).all():
            raise RequestError("inputs.exog.data", "contains NaN or inf")
        exog = ex_shape[2]
    regressors = _v2_regressors(tensors, shape[0])
    if regressors is not None:
        exog = len(regressors[0].exog) + len(regressors[0].future)
    series = _text(params.get("series_id"), "parameters.series_id")
    return ForecastRequest(
        groups=[WindowGroup(np.arange(shape[0]), values, ds)],
        n_windows=shape[0],
        series_ids=[series] * shape[0],
        horizon=_horizon(params.get("horizon"), "parameters.horizon", limits),
        caller=caller_of(params.get("user_id"), headers, "parameters.user_id"),
        model_version=_text(params.get("model_version"), "parameters.model_version"),
        field_prefix="inputs",
        exog_columns=exog,
        regressors=regressors,
    )


def _v2_regressors(tensors: Mapping[str, tuple[int, list[int], Any]],
                   n: int) -> list[Regressors] | None:
    """Tensors ``exog.<column>`` / ``future_exog.<column>`` (``[n, length]``), per window."""
    named = [(name, kind) for name in tensors for kind in ("exog", "future_exog")
             if name.startswith(kind + ".") and len(name) > len(kind) + 1]
    if not named:
        return None
    out = [Regressors() for _ in range(n)]
    for name, kind in named:
        _, shape, data = tensors[name]
        column = name[len(kind) + 1:]
        if len(shape) == 1 and n == 1:
            shape = [1, shape[0]]
        if len(shape) != 2 or shape[0] != n:
            raise RequestError(f"inputs.{name}.shape", f"must be [{n}, length] (one row per "
                                                       f"window), got {shape}")
        block = _reshape(data, shape, f"inputs.{name}.data", timestamps=False)
        for row, regs in zip(block, out, strict=True):
            (regs.exog if kind == "exog" else regs.future)[column] = row
    return out


def v2_response(result: ForecastResult) -> dict[str, Any]:
    n, h = result.yhat.shape
    stamps = np.datetime_as_string(result.ds, unit="s").ravel().tolist()

    def tensor(name: str, datatype: str, data: Any) -> dict[str, Any]:
        return {"name": name, "datatype": datatype, "shape": [n, h], "data": data}

    return {
        "model_name": result.endpoint,
        "model_version": result.model_version,
        "id": result.request_id,
        "parameters": {"variant": result.variant, "request_id": result.request_id,
                       "registered_model": result.model_name, "interval_level": result.level},
        "outputs": [
            tensor("forecast", "FP64", result.yhat.ravel()),
            tensor("lower", "FP64", result.lower.ravel()),
            tensor("upper", "FP64", result.upper.ravel()),
            tensor("timestamps", "BYTES", stamps),
        ],
    }


# ----- the specification's /predict -----------------------------------------------------------
def parse_spec(body: Any, headers: Mapping[str, str], limits: Limits) -> ForecastRequest:
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object with 'data'")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise RequestError("data", "must be a non-empty list of [timestamp, value, ...] rows")
    width = None
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) < 2:
            raise RequestError(f"data[{i}]", "must be a [timestamp, value, exog...] row")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise RequestError(f"data[{i}]", f"has {len(row)} columns, the first row {width}")
    groups = _groups([[r[1] for r in data]], [[r[0] for r in data]], lambda _: "data")
    if width and width > 2:
        _exog([r[2:] for r in data], len(data), "data[*][2:]")
    regressors = None
    if body.get("exog") is not None or body.get("future_exog") is not None:
        regressors = [_window_regressors(
            {k: body.get(k) for k in ("exog", "future_exog")}, "")]
    return ForecastRequest(
        groups=groups,
        n_windows=1,
        series_ids=[_text(body.get("series_id"), "series_id")],
        horizon=_horizon(body.get("forecast_horizon"), "forecast_horizon", limits),
        caller=caller_of(body.get("user_id"), headers, "user_id"),
        model_version=_text(body.get("model_version"), "model_version"),
        field_prefix="data",
        exog_columns=(width or 2) - 2 + (
            0 if regressors is None else len(regressors[0].exog) + len(regressors[0].future)),
        regressors=regressors,
    )


def spec_response(result: ForecastResult, execution_time_ms: float) -> dict[str, Any]:
    return {
        "predictions": result.yhat[0],
        "confidence_intervals": {
            "level": result.level, "lower": result.lower[0], "upper": result.upper[0]
        },
        "timestamps": np.datetime_as_string(result.ds[0], unit="s").tolist(),
        "model_name": result.model_name,
        "model_version": result.model_version,
        "variant": result.variant,
        "request_id": result.request_id,
        "execution_time_ms": round(execution_time_ms, 3),
    }
