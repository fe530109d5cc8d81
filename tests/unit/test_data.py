"""Ingestion, validation, snapshots and splitting on real files (CSV, Parquet, SQLite)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine

from pipelines.config import (
    CsvSource,
    DataConfig,
    ParquetSource,
    RowSlice,
    SplitConfig,
    SqlSource,
    parse_config,
)
from pipelines.data import (
    DataValidationError,
    Snapshot,
    Split,
    load_raw,
    min_rows_required,
    read_snapshot,
    split_labels,
    split_rows,
    validate,
    validate_panel,
    write_snapshot,
)

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"
EXOG = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]


def etth1_config(**overrides: object) -> DataConfig:
    fields = {
        "source": CsvSource(path=ETTH1),
        "time_column": "date",
        "target_column": "OT",
        "exog_columns": EXOG,
        "freq": "h",
    }
    return DataConfig(**(fields | overrides))


@pytest.fixture(scope="module")
def etth1() -> pd.DataFrame:
    cfg = etth1_config()
    return validate(load_raw(cfg), cfg, min_rows=500)


def csv_config(tmp_path: Path, text: str, **overrides: object) -> DataConfig:
    """A small CSV with columns date, OT and optionally X (exogenous)."""
    path = tmp_path / "data.csv"
    path.write_text(text)
    fields = {
        "source": CsvSource(path=path),
        "time_column": "date",
        "target_column": "OT",
        "freq": "h",
    }
    if text.splitlines()[0].endswith(",X"):
        fields["exog_columns"] = ["X"]
    return DataConfig(**(fields | overrides))


def hourly_csv(n: int, exog: bool = False) -> list[str]:
    """Header and ``n`` clean hourly rows, to be edited by a test."""
    stamps = pd.date_range("2021-03-01", periods=n, freq="h")
    lines = ["date,OT,X" if exog else "date,OT"]
    lines += [f"{ts},{i + 0.5}" + (f",{i * 2.0}" if exog else "") for i, ts in enumerate(stamps)]
    return lines


def problems_of(cfg: DataConfig, min_rows: int = 1, **kwargs: float) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate(load_raw(cfg), cfg, min_rows, **kwargs)
    return info.value


# ----- ingestion and clean data ----------------------------------------------------------------
def test_etth1_loads_and_validates(etth1: pd.DataFrame) -> None:
    assert etth1.shape == (17420, 9)
    assert list(etth1.columns) == ["unique_id", "ds", "y", *EXOG]
    assert etth1["ds"].dtype == "datetime64[ns]"
    assert all(etth1[c].dtype == "float64" for c in ["y", *EXOG])
    assert set(etth1["unique_id"]) == {"series"}
    assert (etth1["ds"].diff().iloc[1:] == pd.Timedelta(hours=1)).all()
    assert etth1["ds"].iloc[0] == pd.Timestamp("2016-07-01 00:00:00")
    assert etth1["y"].iloc[0] == pytest.approx(30.5310001373291)


def test_rows_slice(etth1: pd.DataFrame) -> None:
    cfg = etth1_config(rows=RowSlice(start=100, stop=150), series_id="ett")
    df = validate(load_raw(cfg), cfg, min_rows=50)
    assert len(df) == 50
    assert set(df["unique_id"]) == {"ett"}
    expected = etth1.iloc[100:150].reset_index(drop=True).assign(unique_id="ett")
    pd.testing.assert_frame_equal(df, expected)


def test_rows_slice_keeps_source_row_numbers(tmp_path: Path) -> None:
    lines = hourly_csv(12)
    lines[8] = lines[8].replace(",7.5", ",oops")  # data row 8
    cfg = csv_config(tmp_path, "\n".join(lines), rows=RowSlice(start=5, stop=10))
    error = problems_of(cfg)
    assert "column 'OT'" in str(error) and "row 8 ('oops')" in str(error)


def test_rows_slice_past_the_end_is_reported() -> None:
    cfg = etth1_config(rows=RowSlice(start=20000))
    with pytest.raises(DataValidationError, match="no data rows"):
        validate(load_raw(cfg), cfg, min_rows=10)
    with pytest.raises(ValueError, match=r"rows.stop \(5\) must be greater"):
        RowSlice(start=5, stop=5)


def test_parquet_source_round_trip(tmp_path: Path, etth1: pd.DataFrame) -> None:
    path = tmp_path / "ett.parquet"
    source = pd.read_csv(ETTH1, parse_dates=["date"])
    source.set_index("date").to_parquet(path)  # the time column stored as pandas index
    cfg = etth1_config(source=ParquetSource(path=path))
    pd.testing.assert_frame_equal(validate(load_raw(cfg), cfg, min_rows=500), etth1)


def test_sql_source_sqlite(tmp_path: Path, etth1: pd.DataFrame) -> None:
    url = f"sqlite:///{tmp_path / 'ett.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        pd.read_csv(ETTH1).to_sql("ett", conn, index=False)
    engine.dispose()
    query = "SELECT date, OT, HUFL FROM ett WHERE date >= '2016-07-02' ORDER BY date"
    cfg = etth1_config(source=SqlSource(url=url, query=query), exog_columns=["HUFL"])
    df = validate(load_raw(cfg), cfg, min_rows=500)
    expected = etth1.loc[etth1["ds"] >= "2016-07-02", ["unique_id", "ds", "y", "HUFL"]]
    pd.testing.assert_frame_equal(df, expected.reset_index(drop=True))


def test_sql_errors_name_the_source(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    cfg = etth1_config(source=SqlSource(url=url, query="SELECT * FROM nowhere"))
    with pytest.raises(DataValidationError, match=r"SQL query on sqlite.*nowhere"):
        load_raw(cfg)


def test_several_series_are_checked_separately(tmp_path: Path) -> None:
    lines = ["id,date,OT"]
    for ts in pd.date_range("2021-01-01", periods=4, freq="D"):
        lines += [f"A,{ts.date()},1.0", f"B,{ts.date()},2.0"]  # interleaved, same dates
    cfg = csv_config(tmp_path, "\n".join(lines), id_column="id", freq="D")
    df = validate(load_raw(cfg), cfg, min_rows=4)
    assert list(df["unique_id"]) == ["A", "B"] * 4
    lines.append("B,2021-01-06,2.0")
    error = problems_of(csv_config(tmp_path, "\n".join(lines), id_column="id", freq="D"))
    assert "row 9 (series 'B', 2021-01-04 00:00:00 at row 8 -> 2021-01-06" in str(error)


def test_missing_column_names_it_and_lists_available(tmp_path: Path) -> None:
    cfg = csv_config(tmp_path, "\n".join(hourly_csv(3)), exog_columns=["temp"])
    with pytest.raises(DataValidationError) as info:
        load_raw(cfg)
    assert "'temp' (exogenous.historical) not found" in str(info.value)
    assert "available columns: ['date', 'OT']" in str(info.value)
    with pytest.raises(DataValidationError, match=r"'when' \(time_column\) not found"):
        load_raw(csv_config(tmp_path, "\n".join(hourly_csv(3)), time_column="when"))


def test_unreadable_files_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataValidationError, match=re.escape(f"cannot read {missing}")):
        load_raw(etth1_config(source=CsvSource(path=missing)))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataValidationError, match=re.escape(f"cannot read {broken}")):
        load_raw(etth1_config(source=ParquetSource(path=broken)))


def test_exogenous_name_clash_is_rejected(tmp_path: Path) -> None:
    cfg = csv_config(tmp_path, "\n".join(hourly_csv(3)), exog_columns=["y"])
    with pytest.raises(DataValidationError, match="exogenous column 'y'"):
        load_raw(cfg)


# ----- one test per validation problem ---------------------------------------------------------
def test_unparsable_timestamp(tmp_path: Path) -> None:
    lines = hourly_csv(6)
    lines[3] = "2021-03-01 xx:00:00,2.5"
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    assert "column 'date' (time): 1 missing or unparsable timestamp(s) at row 3" in str(error)
    assert "'2021-03-01 xx:00:00'" in str(error)


def test_duplicate_timestamp(tmp_path: Path) -> None:
    lines = hourly_csv(6)
    lines.insert(4, lines[3])  # data row 4 repeated as row 5
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    assert "column 'date' (time): 1 duplicate timestamp(s) at row 4" in str(error)
    assert "same as row 3" in str(error)


def test_decreasing_timestamp_is_rejected_not_sorted(tmp_path: Path) -> None:
    lines = hourly_csv(6)
    lines[4], lines[5] = lines[5], lines[4]  # rows 4 and 5 swapped
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    assert "column 'date' (time): 1 timestamp(s) earlier than the previous row" in str(error)
    assert "row 5 (2021-03-01 03:00:00 after 2021-03-01 04:00:00 at row 4)" in str(error)


def test_gap_reports_both_timestamps(tmp_path: Path) -> None:
    lines = hourly_csv(8)
    del lines[4:6]  # drop 03:00 and 04:00
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    assert "column 'date' (time): 1 step(s) that are not the frequency 'h'" in str(error)
    assert "row 4 (2021-03-01 02:00:00 at row 3 -> 2021-03-01 05:00:00" in str(error)


def test_daily_frequency_accepts_daily_and_rejects_hourly(tmp_path: Path) -> None:
    daily = ["date,OT"] + [f"2021-01-{d:02d},1.0" for d in range(1, 6)]
    cfg = csv_config(tmp_path, "\n".join(daily), freq="D")
    assert len(validate(load_raw(cfg), cfg, 5)) == 5
    error = problems_of(csv_config(tmp_path, "\n".join(hourly_csv(5)), freq="D"))
    assert "4 step(s) that are not the frequency 'D'" in str(error)


def test_non_numeric_target_and_exog(tmp_path: Path) -> None:
    lines = hourly_csv(6, exog=True)
    lines[2] = lines[2].replace(",1.5,", ",abc,")
    lines[5] = lines[5].rsplit(",", 1)[0] + ",n/a?"
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    assert "column 'OT' (target): 1 non-numeric value(s) at row 2 ('abc')" in str(error)
    assert "column 'X' (exogenous): 1 non-numeric value(s) at row 5 ('n/a?')" in str(error)


def test_missing_values_allowed_up_to_the_limit(tmp_path: Path) -> None:
    lines = hourly_csv(10, exog=True)
    lines[3] = lines[3].replace(",2.5,", ",,")
    lines[7] = lines[7].rsplit(",", 1)[0] + ","
    cfg = csv_config(tmp_path, "\n".join(lines))
    df = validate(load_raw(cfg), cfg, min_rows=10)
    assert df["y"].isna().sum() == 1 and np.isnan(df.loc[2, "y"])
    assert df["X"].isna().sum() == 1
    df = validate(load_raw(cfg), cfg, min_rows=10, max_missing_fraction=0.1)
    assert len(df) == 10
    error = problems_of(cfg, max_missing_fraction=0.05)
    assert "column 'OT' (target): 10.0% of values missing" in str(error)
    assert "missing at row 3" in str(error)
    assert "column 'X' (exogenous): 10.0% of values missing" in str(error)


def test_infinite_values(tmp_path: Path) -> None:
    lines = hourly_csv(6)
    lines[6] = lines[6].replace(",5.5", ",-inf")
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    assert "column 'OT' (target): 1 infinite value(s) at row 6 (-inf)" in str(error)


def test_too_few_rows_says_how_many_and_why(tmp_path: Path) -> None:
    error = problems_of(csv_config(tmp_path, "\n".join(hourly_csv(100))), min_rows=500)
    assert "series 'series' has 100 rows; the configured windows need at least 500" in str(error)
    assert "horizon" in str(error)


def test_all_problems_reported_together(tmp_path: Path) -> None:
    lines = hourly_csv(20, exog=True)
    lines[2] = lines[2].replace(",1.5,", ",abc,")
    lines[5] = "bad-date,1.0,1.0"
    lines[9] = lines[9].replace(",8.5,", ",inf,")
    lines.insert(13, lines[12])
    error = problems_of(csv_config(tmp_path, "\n".join(lines)), min_rows=100)
    assert len(error.problems) == 5
    assert str(error).count("\n  - ") == 5
    for fragment in ("unparsable", "duplicate", "non-numeric", "infinite", "has 21 rows"):
        assert fragment in str(error)


def test_at_most_five_offenders_shown_with_total(tmp_path: Path) -> None:
    lines = hourly_csv(12)
    lines[1:9] = [line.replace(",", ",x") for line in lines[1:9]]
    error = problems_of(csv_config(tmp_path, "\n".join(lines)))
    message = error.problems[0]
    assert message.startswith("column 'OT' (target): 8 non-numeric value(s) at row 1 ")
    assert "row 5 ('x4.5') and 3 more" in message and "row 6" not in message


def test_validate_writes_nothing_and_keeps_order(tmp_path: Path) -> None:
    cfg = csv_config(tmp_path, "\n".join(hourly_csv(5)))
    raw = load_raw(cfg)
    before = raw.copy()
    validate(raw, cfg, min_rows=5)
    pd.testing.assert_frame_equal(raw, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


# ----- snapshots -------------------------------------------------------------------------------
def test_snapshot_hash_is_stable_and_idempotent(tmp_path: Path, etth1: pd.DataFrame) -> None:
    first = write_snapshot(etth1, tmp_path / "snaps")
    second = write_snapshot(etth1.copy(), tmp_path / "snaps")
    assert isinstance(first, Snapshot) and first == second
    name = f"snapshot-{first.sha256[:12]}.parquet"
    assert first.rows == 17420 and first.url == f"{tmp_path}/snaps/{name}"
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == [name]
    rewritten = write_snapshot(read_snapshot(first.url), tmp_path / "other")
    assert rewritten.sha256 == first.sha256

    changed = etth1.copy()
    changed.loc[1000, "y"] += 1e-9
    assert write_snapshot(changed, tmp_path / "snaps").sha256 != first.sha256


def test_read_snapshot_verifies_hash(tmp_path: Path, etth1: pd.DataFrame) -> None:
    snap = write_snapshot(etth1.iloc[:100], tmp_path)
    pd.testing.assert_frame_equal(read_snapshot(snap.url, snap.sha256), etth1.iloc[:100])
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f"content hash {snap.sha256}, expected {wrong}"):
        read_snapshot(snap.url, wrong)


# ----- splitting -------------------------------------------------------------------------------
def test_split_rows_numbers() -> None:
    split = split_rows(100, SplitConfig(val_size=10, test_size=15))
    assert split == Split(train=slice(0, 75), val=slice(75, 85), test=slice(85, 100))
    split = split_rows(100, SplitConfig(val_size=10, test_size=15, train_size=50))
    assert split.train == slice(25, 75)
    assert len(range(100)[split.val]) == 10 and len(range(100)[split.test]) == 15


def test_split_rows_errors() -> None:
    with pytest.raises(ValueError, match=r"30 rows, too few.*val_size 10 \+ test_size 20 = 31"):
        split_rows(30, SplitConfig(val_size=10, test_size=20))
    with pytest.raises(ValueError, match=r"train_size 80 \+ val_size 10 \+ test_size 20 = 110"):
        split_rows(100, SplitConfig(val_size=10, test_size=20, train_size=80))
    with pytest.raises(ValueError, match=r"val_size 23 too small for horizon 24.*24 rows"):
        split_rows(1000, SplitConfig(val_size=23, test_size=48), horizon=24)


def test_min_rows_required() -> None:
    def experiment(**split: int) -> object:
        return parse_config(
            {
                "name": "t",
                "data": {"source": {"kind": "csv", "path": str(ETTH1)}},
                "split": split,
                "horizon": 24,
                "algorithms": {"seasonal_naive": {}},
            }
        )

    assert min_rows_required(experiment(val_size=48, test_size=72), min_history=168) == (
        168 + 24 + 1 + 48 + 72
    )
    assert min_rows_required(experiment(val_size=48, test_size=72, train_size=1000), 168) == (
        1000 + 48 + 72
    )
    with pytest.raises(ValueError, match="test_size 10 too small for horizon 24"):
        min_rows_required(experiment(val_size=48, test_size=10), min_history=168)


# ----- panels: problems by series, the invalid_series policy, per-series splits ---------------
def panel_csv(n: int = 12) -> list[str]:
    """Three clean hourly series A, B, C of ``n`` rows (series after series)."""
    lines = ["id,date,OT"]
    for k, key in enumerate("ABC"):
        stamps = pd.date_range("2021-03-01", periods=n, freq="h")
        lines += [f"{key},{ts},{k * 10 + i + 0.5}" for i, ts in enumerate(stamps)]
    return lines


def test_panel_problems_are_reported_by_series_in_one_error(tmp_path: Path) -> None:
    lines = panel_csv()
    lines[3] = lines[3].replace(",2.5", ",abc")  # series A, data row 3
    del lines[17:19]  # a gap in series B
    cfg = csv_config(tmp_path, "\n".join(lines), id_column="id")
    with pytest.raises(DataValidationError) as info:
        validate_panel(load_raw(cfg), cfg, min_rows=5)
    message = str(info.value)
    assert "2 series with problems (invalid_series: fail)" in message
    assert "'A': non-numeric 'OT' (target) at row 3 ('abc')" in message
    assert "'B': gaps or off-grid timestamps (frequency 'h') at row 17" in message
    assert "'C'" not in message.split("series with problems")[1]


def test_drop_policy_keeps_the_good_series_and_says_why(tmp_path: Path) -> None:
    lines = panel_csv()
    lines[3] = lines[3].replace(",2.5", ",abc")
    lines.insert(15, lines[14])  # a duplicate timestamp in series B
    cfg = csv_config(tmp_path, "\n".join(lines), id_column="id", invalid_series="drop")
    df, dropped = validate_panel(load_raw(cfg), cfg, min_rows=5)
    assert set(df["unique_id"]) == {"C"} and len(df) == 12
    assert dropped["A"] == ["non-numeric 'OT' (target) at row 3 ('abc')"]
    assert dropped["B"][0].startswith("duplicate timestamps at row 15")
    with pytest.raises(DataValidationError, match="every series has problems"):
        validate_panel(load_raw(cfg), cfg, min_rows=5, extra=lambda typed: {"C": "constant"})


def test_drop_policy_still_fails_on_problems_of_no_series(tmp_path: Path) -> None:
    lines = panel_csv()
    lines[5] = "," + lines[5].split(",", 1)[1]  # a row without a series id
    cfg = csv_config(tmp_path, "\n".join(lines), id_column="id", invalid_series="drop")
    with pytest.raises(DataValidationError, match=r"1 missing series id\(s\) at row 5"):
        validate_panel(load_raw(cfg), cfg, min_rows=5)


def test_split_labels_per_series_and_common(tmp_path: Path) -> None:
    lines = panel_csv(10)[:-3]  # series C ends three hours early
    cfg = csv_config(tmp_path, "\n".join(lines), id_column="id")
    df = validate(load_raw(cfg), cfg, min_rows=5)
    per_series = split_labels(df, SplitConfig(val_size=2, test_size=3, train_size=4), "h")
    assert list(per_series[:10]) == ["unused"] + ["train"] * 4 + ["val"] * 2 + ["test"] * 3
    assert list(per_series[20:]) == ["train"] * 2 + ["val"] * 2 + ["test"] * 3
    common = split_labels(df, SplitConfig(val_size=2, test_size=3, align="common"), "h")
    assert list(common[:10]) == ["train"] * 5 + ["val"] * 2 + ["test"] * 3
    assert list(common[20:]) == ["train"] * 5 + ["val"] * 2  # no test rows left for C
