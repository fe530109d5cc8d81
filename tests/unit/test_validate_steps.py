"""Validation's cheaper paths for large panels (series numbered once, previous rows found
without grouping, no timestamp lookups when every series increases, no parsing of timestamps
that are datetimes already) report exactly what the general paths report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import CsvSource, DataConfig, ParquetSource
from pipelines.data import DataValidationError, load_raw, validate
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
