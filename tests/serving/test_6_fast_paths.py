"""The serving fast paths give exactly what the slow ones give: timestamp parsing, large V1
bodies, histogram observation, the XGBoost prediction call and prediction-log rows."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from sqlalchemy import select

from serving.config import Limits
from serving.metrics import VALUE_BUCKETS, observe_many
from serving.prediction_log.reader import forecast_points, logged_windows
from serving.prediction_log.schema import prediction_requests
from serving.prediction_log.writer import LogEntry, PredictionLogWriter
from serving.protocol import (
    ForecastRequest,
    RequestError,
    iso_json_arrays,
    new_request_id,
    parse_timestamps,
    parse_v1,
)
from serving.v1_body import parse_v1_large

NS_SECONDS = (np.datetime64("1678-01-01", "s").astype(int),
              np.datetime64("2261-12-31T23:59:59", "s").astype(int))


def _iso(seconds: np.ndarray) -> list[str]:
    return np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").tolist()


def test_fast_timestamps_match_numpy() -> None:
    seconds = np.random.default_rng(0).integers(*NS_SECONDS, 50_000)
    stamps = _iso(seconds)
    assert (parse_timestamps(stamps, "t") == np.asarray(stamps).astype("datetime64[ns]")).all()
    spaced = [s.replace("T", " ") for s in stamps[:500]]
    assert (parse_timestamps(spaced, "t") == seconds[:500].astype("datetime64[s]")).all()
    nested = [stamps[i:i + 24] for i in range(0, 2400, 24)]
    parsed = parse_timestamps(nested, "t")
    assert parsed.shape == (100, 24)
    assert (parsed.ravel() == seconds[:2400].astype("datetime64[s]")).all()
    leap_days = ["2000-02-29T00:00:00", "2024-02-29T23:59:59"] * 150
    assert (parse_timestamps(leap_days, "t") == np.asarray(leap_days, "datetime64[ns]")).all()


def test_other_forms_fall_back_to_numpy() -> None:
    base = ["2020-01-01T00:00:00"] * 300
    other = ["2020-01-01T00:00:00Z", "2020-01-01T00:00:00.5", "2020-01-01", "2020-01-01T00:00"]
    assert (parse_timestamps(base + other, "t")[300:]
            == np.asarray(other).astype("datetime64[ns]")).all()


@pytest.mark.parametrize("bad", [
    "2019-02-29T00:00:00", "2020-02-30T00:00:00", "2020-13-01T00:00:00", "2020-00-10T00:00:00",
    "2020-01-00T00:00:00", "2020-01-01T24:00:00", "2020-01-01T00:60:00", "2020-01-01T00:00:60",
    "2020-01-01t00:00:00", "20x0-01-01T00:00:00", "3000-01-01T00:00:00", "1600-01-01T00:00:00",
    "2020-01-01T00:00:00\n2020-01-01T01:00:00",  # two timestamps in one string
])
def test_malformed_or_out_of_range_timestamps_are_refused(bad: str) -> None:
    with pytest.raises(RequestError, match=r"^t: "):
        parse_timestamps(["2020-01-01T00:00:00"] * 300 + [bad], "t")


@pytest.mark.parametrize("pair", [
    ["2020-01-01T00:00:0", "52020-01-01T01:00:00"],  # 18 + 20 characters, as long as two
    ["2020-01-01T00:00:00\n2020-01-01T01:00:00", ""],  # two in one, and an empty one
])
def test_misaligned_strings_are_not_taken_as_timestamps(pair: list[str]) -> None:
    with pytest.raises(RequestError):
        parse_timestamps(["2020-01-01T00:00:00"] * 300 + pair, "t")


def test_observe_many_matches_observe() -> None:
    registry = CollectorRegistry()
    one = Histogram("one", "h", ["v"], buckets=VALUE_BUCKETS, registry=registry).labels("x")
    many = Histogram("many", "h", ["v"], buckets=VALUE_BUCKETS, registry=registry).labels("x")
    values = np.array([-2000, -1000, -5, -0.0, 0, 3, 5, 5.0001, 10_000, 10_001, 1e9, np.nan])
    for value in values:
        one.observe(value)
    observe_many(many, values)
    text = generate_latest(registry).decode().splitlines()

    def samples(name: str) -> list[str]:
        return [line.removeprefix(name) for line in text
                if line.startswith(name) and "_created" not in line]

    assert samples("one_") == samples("many_") and samples("one_")


def test_lean_booster_predicts_exactly_as_xgboost() -> None:
    import xgboost as xgb

    from serving.served_model import LeanBooster

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8))
    booster = xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=x[:, 0] ** 2),
                        num_boost_round=20)
    lean = LeanBooster(booster)
    for rows in (1, 7, 400):
        data = np.ascontiguousarray(x[:rows])
        expected = booster.inplace_predict(data)
        got = lean.inplace_predict(data)
        assert got.dtype == expected.dtype and (got == expected).all()
    strided = x[::2]  # not contiguous: xgboost's own call
    assert (lean.inplace_predict(strided) == booster.inplace_predict(strided)).all()
    assert lean.num_features() == 8


def test_log_rows_read_back_through_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    writer = PredictionLogWriter(url, flush_interval=0.05)
    ds = np.array([["2020-01-01T01:00", "2020-01-01T02:00"]] * 2, "datetime64[ns]")
    history = np.arange(6.0).reshape(2, 3)
    yhat = np.array([[1.5, 2.5], [3.5, 4.5]])
    served = time.time()
    writer.submit(LogEntry(
        "req-1", served, "caller", "champion", "model", "3", ["a", None],
        [(np.array([1, 0]), history, np.zeros((2, 3), "datetime64[ns]"))], 0, ds, yhat,
        yhat - 1, yhat + 1))
    assert writer.close() == 0
    with writer._engine.connect() as conn:
        (row,) = conn.execute(select(prediction_requests)).all()
    assert (row.request_id, row.caller, row.variant, row.model_version, row.windows,
            row.horizon) == ("req-1", "caller", "champion", "3", 2, 2)
    assert row.ts == datetime.fromtimestamp(served, UTC).replace(tzinfo=None)
    windows = logged_windows(writer._engine).set_index("window")
    assert list(windows["series_id"]) == ["a", None]
    second = windows.loc[1]  # history row 0 is window 1
    assert (second.history_len, second.history_last, second.history_mean) == (3, 2.0, 1.0)
    assert second.history_last_ds == "1970-01-01T00:00:00"
    assert second.ds == ["2020-01-01T01:00:00", "2020-01-01T02:00:00"]
    assert (second.yhat, second.lower, second.upper) == ([3.5, 4.5], [2.5, 3.5], [4.5, 5.5])
    points = forecast_points(writer._engine, datetime(2000, 1, 1))
    assert len(points) == 4 and list(points["step"]) == [1, 2, 1, 2]
    assert list(points["yhat"]) == [1.5, 2.5, 3.5, 4.5] and points["y"].isna().all()


def _entry(request_id: str, window: int = 0) -> LogEntry:
    """One window of 3 values and its forecast; its history at ``window`` (0: valid)."""
    yhat = np.array([[1.0]])
    return LogEntry(request_id, time.time(), None, "champion", "model", "1", ["s"],
                    [(np.array([window]), np.ones((1, 3)), np.zeros((1, 3), "datetime64[ns]"))],
                    0, np.zeros((1, 1), "datetime64[ns]"), yhat, yhat, yhat)


async def _submit_on_a_loop(writer: PredictionLogWriter) -> tuple[int, int]:
    """(entries not yet encoded right after ``submit``, the same two loop steps later)."""
    writer.submit(_entry("on-loop"))
    right_after = len(writer._entries)
    await asyncio.sleep(0)  # the step that would send the response
    await asyncio.sleep(0)  # the step that encodes the row
    return right_after, len(writer._entries)


def test_rows_are_encoded_on_the_loop_after_the_response(tmp_path: Path) -> None:
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.db'}", flush_interval=0.05)
    right_after, later = asyncio.run(_submit_on_a_loop(writer))
    assert (right_after, later) == (1, 0)  # submit only queued it; the loop encoded it
    assert writer.close() == 0
    with writer._engine.connect() as conn:
        assert [r.request_id for r in conn.execute(select(prediction_requests))] == ["on-loop"]


def test_an_entry_that_cannot_be_encoded_is_dropped_alone(tmp_path: Path) -> None:
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.db'}", flush_interval=0.05)
    writer.submit(_entry("good-1"))
    writer.submit(_entry("bad", window=3))  # a history for a window the request lacks
    writer.submit(_entry("good-2"))
    assert writer.close() == 0
    with writer._engine.connect() as conn:
        ids = sorted(r.request_id for r in conn.execute(select(prediction_requests)))
    assert ids == ["good-1", "good-2"]


def test_request_ids_are_uuid7_in_time_order() -> None:
    """Generated request ids are RFC 9562 version-7 UUIDs: unique, and later ones sort after
    earlier ones (the prediction log's primary key then grows at the end of its index)."""
    before = time.time()
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    parsed = [uuid.UUID(i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert all(len(i) == 32 for i in ids)
    millis = {u.int >> 80 for u in parsed}
    assert before * 1000 - 1 <= min(millis) <= max(millis) <= time.time() * 1000 + 1
    time.sleep(0.002)
    assert new_request_id() > max(ids)


def _windows(rows: int = 100, width: int = 24, seed: int = 1) -> list[dict[str, Any]]:
    """``rows`` windows of hourly ISO timestamps and values (ints and floats mixed)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(*NS_SECONDS, rows) // 3600 * 3600
    values = rng.normal(10, 5, (rows, width)).round(rng.integers(0, 17))
    return [{"timestamps": _iso(start + 3600 * np.arange(width)),
             "values": [int(v) if i % 5 == 0 else float(v) for i, v in enumerate(row)],
             "series_id": f"s{i}"} for i, (start, row) in enumerate(zip(starts, values,
                                                                          strict=True))]


def _both(body: Any) -> tuple[Any, Any]:
    """What ``parse_v1_large`` and ``parse_v1(orjson.loads(...))`` make of ``body``."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"x-user-id": "header-caller"}
    try:
        slow: Any = parse_v1(orjson.loads(raw), headers, Limits())
    except RequestError as exc:
        slow = exc
    return parse_v1_large(raw, headers, Limits()), slow


def _same(fast: ForecastRequest, slow: ForecastRequest) -> None:
    assert isinstance(slow, ForecastRequest)
    (f,), (s,) = fast.groups, slow.groups
    assert (f.index == s.index).all()
    for a, b in ((f.values, s.values), (f.ds, s.ds)):
        assert a.dtype == b.dtype and a.shape == b.shape and a.flags.writeable
        assert (a == b).all()
    assert ({k: v for k, v in vars(fast).items() if k != "groups"}
            == {k: v for k, v in vars(slow).items() if k != "groups"})


@pytest.mark.parametrize("extra", [
    {}, {"parameters": {"horizon": 3}}, {"horizon": 2.0, "user_id": "u7", "model_version": "2"},
    {"parameters": None, "user_id": None},
])
def test_large_v1_bodies_parse_as_orjson_does(extra: dict[str, Any]) -> None:
    body = {"instances": _windows(), **extra}
    fast, slow = _both(body)
    assert fast is not None
    _same(fast, slow)
    spaced = {"instances": [dict(w, timestamps=[t.replace("T", " ") for t in w["timestamps"]])
                            for w in body["instances"]]}
    unnamed = {"instances": [{"values": w["values"], "timestamps": w["timestamps"]}
                             for w in body["instances"]]}
    for other in (spaced, unnamed):
        fast, slow = _both(other)
        assert fast is not None
        _same(fast, slow)
    indented = json.dumps(body, indent=2).encode()  # whitespace between tokens
    fast, slow = _both(indented)
    assert fast is not None
    _same(fast, slow)


def _changed(change: Any) -> dict[str, Any]:
    body = {"instances": _windows()}
    change(body)
    return body


@pytest.mark.parametrize(("case", "body"), [
    ("small body", {"instances": _windows(rows=2)}),
    ("nested values", _changed(lambda b: b["instances"][3].update(
        values=[[], [1.0, 2.0], *b["instances"][3]["values"][2:]]))),
    ("windows of two lengths", _changed(lambda b: (
        b["instances"][0].update(values=b["instances"][0]["values"][:-1],
                                 timestamps=b["instances"][0]["timestamps"][:-1]),
        b["instances"][1]["values"].append(1.0),
        b["instances"][1]["timestamps"].append("2262-01-01T00:00:00")))),
    ("values of two lengths", _changed(lambda b: (
        b["instances"][1]["values"].append(1.0), b["instances"][2]["values"].pop()))),
    ("unknown name", _changed(lambda b: b.update(note="hi"))),
    ("unknown name in a window", _changed(lambda b: b["instances"][4].update(note="hi"))),
    ("exogenous values", _changed(lambda b: b["instances"][0].update(exog=[[1.0]] * 24))),
    ("a string value", _changed(lambda b: b["instances"][5]["values"].__setitem__(3, "4"))),
    ("a boolean value", _changed(lambda b: b["instances"][5]["values"].__setitem__(3, True))),
    ("a null value", _changed(lambda b: b["instances"][5]["values"].__setitem__(3, None))),
    ("another timestamp form", _changed(
        lambda b: b["instances"][9]["timestamps"].__setitem__(0, "1990-01-01T00:00:00Z"))),
    ("timestamps out of order", _changed(lambda b: b["instances"][9]["timestamps"].reverse())),
    ("a numeric series id", _changed(lambda b: b["instances"][2].update(series_id=7))),
    ("parameters not an object", _changed(lambda b: b.update(parameters=[]))),
    ("a bad horizon", _changed(lambda b: b.update(parameters={"horizon": 0}))),
    ("too many windows", {"instances": _windows(rows=1001, width=2)}),
    ("a root that is a list", [_windows()]),
])
def test_other_large_v1_bodies_go_the_long_way(case: str, body: Any) -> None:
    """Every body outside the canonical form, and every body with an error, gives None: the
    server then parses it with orjson as before (and names any error)."""
    assert parse_v1_large(orjson.dumps(body), {}, Limits()) is None, case


def test_large_v1_bodies_that_are_not_plain_json_go_the_long_way() -> None:
    raw = orjson.dumps({"instances": _windows(), "user_id": "a"})
    repeated = raw[:-1] + b',"user_id":"b"}'  # a name twice: orjson keeps the last one
    repeated_id = raw.replace(b'"series_id":"s0"', b'"series_id":"s0","series_id":"t"')
    assert parse_v1_large(raw, {}, Limits()) is not None
    for other in (raw[:-1], raw.replace(b"10", b"1e400", 1), repeated, repeated_id,
                  b"\xff" + raw):
        assert parse_v1_large(other, {}, Limits()) is None


def test_iso_json_arrays_match_numpy_and_refuse_other_layouts() -> None:
    seconds = np.random.default_rng(2).integers(*NS_SECONDS, 600)
    stamps = _iso(seconds)
    arrays = [orjson.dumps(stamps[i:i + 30]) for i in range(0, 600, 30)]
    parsed = iso_json_arrays(b"".join(arrays), 20, 30)
    assert parsed is not None and parsed.shape == (20, 30)
    assert (parsed.ravel() == seconds.astype("datetime64[s]")).all()
    one = orjson.dumps(["2020-01-01T00:00:00", "2020-01-01 01:00:00"])
    assert (iso_json_arrays(one, 1, 2) == np.asarray(
        ["2020-01-01T00:00", "2020-01-01T01:00"], "datetime64[ns]")).all()
    for other, rows, width in [
        (b'{"2020-01-01T00:00:00":"2020-01-01T00:00:00"}', 1, 2),  # an object, not an array
        (b'["2020-01-01T00:00:0\\u0030"]', 1, 1),  # an escape
        (b'["2020-01-01T00:00:00"]["2020-01-01T00:00:00","2020-01-01T01:00:00"]', 1, 3),
        (b'["2020-01-01T00:00:00","2020-02-30T00:00:00"]', 1, 2),  # no such day
        (b'["2020-01-01T00:00:00",20200101000000000000]', 1, 2),  # not a string
    ]:
        assert iso_json_arrays(other, rows, width) is None, other
