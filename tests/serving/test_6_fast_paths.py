"""The serving fast paths give exactly what the slow ones give: timestamp parsing, histogram
observation, the XGBoost prediction call and prediction-log rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from sqlalchemy import select

from serving.metrics import VALUE_BUCKETS, observe_many
from serving.prediction_log.reader import forecast_points, logged_windows
from serving.prediction_log.schema import prediction_requests
from serving.prediction_log.writer import LogEntry, PredictionLogWriter
from serving.protocol import RequestError, new_request_id, parse_timestamps

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
