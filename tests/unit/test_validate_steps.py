"""Ingest's cheaper paths for large panels (series numbered once, previous rows found
without grouping, no timestamp lookups when every series increases, no parsing of timestamps
that are datetimes already, split sizes counted per series number, the snapshot's read-back
hashed one column at a time) report exactly what the general paths report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import CsvSource, DataConfig, ParquetSource, parse_config
from pipelines.data import (
    DataValidationError,
    content_hash,
    load_raw,
    split_labels,
    split_problems,
    validate,
    write_snapshot,
)
from pipelines.data.snapshot import _parquet_hash
from pipelines.data.validate import _previous_rows


@pytest.mark.parametrize("grouped", [True, False])
def test_previous_rows_match_a_grouped_shift(grouped: bool) -> None:
    codes = np.random.default_rng(1).integers(0, 7, 500)
    codes = np.sort(codes) if grouped else codes
    expected = pd.Series(np.arange(500)).groupby(codes).shift().fillna(-1).astype(int)
    np.testing.assert_array_equal(_previous_rows(codes), expected.to_numpy())
    assert list(_previous_rows(np.array([3]))) == [-1]


def _csv(tmp_path: Path, lines: list[str], freq: str = "h") -> DataConfig:
    path = tmp_path / "panel.csv"
    path.write_text("\n".join(["id,date,OT", *lines]))
    return DataConfig(source=CsvSource(path=path), id_column="id", time_column="date",
                      target_column="OT", freq=freq)  # fmt: skip


def _error(cfg: DataConfig) -> str:
    with pytest.raises(DataValidationError) as info:
        validate(load_raw(cfg), cfg, min_rows=1)
    return str(info.value)


def test_interleaved_duplicate_behind_an_unparsable_row(tmp_path: Path) -> None:
    # A: 00:00, bad, 00:00 (a duplicate across the bad row, each step from a usable row > 0)
    lines = ["A,2021-01-01 00:00,1", "B,2021-01-01 00:00,2", "A,not a time,1",
             "B,2021-01-01 01:00,2", "A,2021-01-01 00:00,1"]  # fmt: skip
    message = _error(_csv(tmp_path, lines))
    assert "1 missing or unparsable timestamp(s) at row 3 ('not a time')" in message
    assert ("1 duplicate timestamp(s) at row 5 (series 'A', 2021-01-01 00:00:00, same as "
            "row 1)") in message  # fmt: skip


def test_interleaved_gap_and_calendar_frequency(tmp_path: Path) -> None:
    lines = ["A,2021-01-01 00:00,1", "B,2021-01-01 00:00,2", "B,2021-01-01 01:00,2",
             "A,2021-01-01 03:00,1"]  # fmt: skip
    assert ("row 4 (series 'A', 2021-01-01 00:00:00 at row 1 -> 2021-01-01 03:00:00, a "
            "step of 0 days 03:00:00)") in _error(_csv(tmp_path, lines))  # fmt: skip
    months = ["A,2021-01-01,1", "A,2021-02-01,1", "A,2021-04-01,1"]
    assert "1 step(s) that are not the frequency 'MS'" in _error(_csv(tmp_path, months, "MS"))
    ok = validate(load_raw(cfg := _csv(tmp_path, months[:2], "MS")), cfg, min_rows=1)
    assert len(ok) == 2


def test_parquet_datetimes_and_integer_ids(tmp_path: Path) -> None:
    stamps = pd.date_range("2021-01-01", periods=3, freq="h")
    frame = pd.DataFrame({"id": [7, 7, 7, 8, 8, 8], "date": stamps.append(stamps),
                          "OT": np.arange(6.0)})  # fmt: skip
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path)
    cfg = DataConfig(source=ParquetSource(path=path), id_column="id", time_column="date",
                     target_column="OT", freq="h")  # fmt: skip
    raw = load_raw(cfg)
    assert raw["ds"].dtype == "datetime64[ns]"  # the path without parsing
    typed = validate(raw, cfg, min_rows=3)
    assert list(typed["unique_id"]) == ["7"] * 3 + ["8"] * 3
    assert typed["ds"].dtype == "datetime64[ns]" and typed["ds"].equals(raw["ds"])
    aware = frame.assign(date=frame["date"].dt.tz_localize("Europe/Paris"))
    aware.to_parquet(path)
    converted = validate(load_raw(cfg), cfg, min_rows=3)
    assert converted["ds"].iloc[0] == pd.Timestamp("2020-12-31 23:00")  # in UTC, naive
    frame.drop(index=4).to_parquet(path)
    assert "row 5 (series '8', 2021-01-01 00:00:00 at row 4 -> 2021-01-01 02:00:00" in _error(cfg)


def test_split_problems_count_like_a_crosstab() -> None:
    source = {"kind": "csv", "path": "unused.csv"}
    cfg = parse_config({
        "name": "p", "horizon": 2, "algorithms": {"seasonal_naive": {}},
        "data": {"source": source, "time_column": "ds", "target_column": "y", "freq": "h"},
        "split": {"val_size": 2, "test_size": 2}})  # fmt: skip
    lengths = {"b": 12, "a": 5, "c": 9, "d": 3}
    df = pd.DataFrame({"unique_id": [k for k, n in lengths.items() for _ in range(n)]})
    labels = split_labels(df, cfg.split, "h")
    assert len({id(label) for label in labels}) == 3  # three shared strings, not one per row
    problems = split_problems(df, labels, cfg, min_history=3)
    counts = pd.crosstab(df["unique_id"].to_numpy(), labels)
    assert list(problems) == ["a", "c", "d"]  # by id, as before
    for uid, reason in problems.items():
        row = counts.loc[uid].reindex(["train", "val", "test"], fill_value=0)
        assert f"train {row['train']} < 6" in reason
    assert "(train 0 < 6, val 1 < 2 needed" in problems["d"]


def test_snapshot_read_back_hash_is_the_whole_frames(tmp_path: Path) -> None:
    frame = pd.DataFrame({"unique_id": ["a", "b", None], "ds": pd.date_range("2021", periods=3),
                          "y": [1.0, np.nan, 3.0], "n": pd.array([1, None, 3], dtype="Int64"),
                          "c": pd.Categorical(["x", "y", "x"])})  # fmt: skip
    path = tmp_path / "frame.parquet"
    frame.to_parquet(path, index=False)
    data = path.read_bytes()
    assert _parquet_hash(data) == content_hash(pd.read_parquet(path)) == content_hash(frame)
    seconds = frame.assign(ds=frame["ds"].astype("datetime64[s]"))  # reads back as [ms]
    with pytest.raises(ValueError, match="do not survive a Parquet round trip"):
        write_snapshot(seconds, str(tmp_path / "snaps"))
    assert not (tmp_path / "snaps").exists() or not list((tmp_path / "snaps").iterdir())
