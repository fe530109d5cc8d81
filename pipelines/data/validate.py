"""Validate a raw long frame and return it typed; every problem is reported in one error.

Row numbers in messages are 1-based data rows of the source (header excluded), counted from
the start of the source even when ``cfg.rows`` selects a slice, so they point into the file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from pipelines.config import CsvSource, DataConfig, ParquetSource, Source

MAX_SHOWN = 5
"""Offenders listed per problem; the message always gives the total count."""


class DataValidationError(ValueError):
    """Data that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def describe_source(source: Source) -> str:
    """A short human-readable name of a source (passwords in SQL URLs are masked)."""
    if isinstance(source, CsvSource):
        return f"CSV file {source.path}"
    if isinstance(source, ParquetSource):
        return f"Parquet file {source.path}"
    url = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", source.url)
    return f"SQL query on {url}"


def validate(
    raw: pd.DataFrame, cfg: DataConfig, min_rows: int, max_missing_fraction: float = 1.0
) -> pd.DataFrame:
    """Check the long frame from ``load_raw`` and return it typed, in the given row order.

    Columns out: ``unique_id`` (str), ``ds`` (datetime64[ns], timezone-aware values in UTC),
    ``y`` and the exogenous columns (float64, missing values as NaN). Raises one
    ``DataValidationError`` listing every problem. Writes nothing.
    """
    found = _check(raw, cfg, min_rows, max_missing_fraction)
    if found.problems:
        raise found.error(cfg)
    return found.typed


def validate_panel(
    raw: pd.DataFrame,
    cfg: DataConfig,
    min_rows: int,
    max_missing_fraction: float = 1.0,
    extra: Callable[[pd.DataFrame], dict[str, str]] | None = None,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """``validate`` with the config's ``invalid_series`` policy, for any number of series.

    ``extra(typed)`` may add per-series problems (series id -> reason) found on the typed rows
    of the otherwise valid series. With ``fail`` any problem raises one error that also lists
    the problems by series id; with ``drop`` the series with problems are left out and
    returned as ``{series id: [reasons]}``. Problems tied to no series (missing ids, no rows)
    and a panel with no valid series left always raise.
    """
    found = _check(raw, cfg, min_rows, max_missing_fraction)
    del raw  # the caller may hand it over: its columns not kept in the typed frame go now
    if found.typed is not None and extra is not None:
        valid = found.typed
        if found.by_series:  # a copy only when some series are left out
            keep = ~valid["unique_id"].isin(list(found.by_series)).to_numpy()
            valid = valid[keep].reset_index(drop=True)
        for uid, reason in extra(valid).items():
            found.add(f"series {uid!r}: {reason}", series={uid: reason})
    if found.problems and (cfg.invalid_series == "fail" or found.unattributed):
        raise found.error(cfg)
    typed = found.typed
    if found.by_series:
        typed = typed[~typed["unique_id"].isin(list(found.by_series))].reset_index(drop=True)
        if typed.empty:
            raise found.error(cfg, "every series has problems; none is left to train on")
    return typed, found.by_series


class _Found:
    """Problems found so far: messages, and which series each concerns."""

    def __init__(self, uid: pd.Series, rows: np.ndarray) -> None:
        self.uid, self.rows = uid, rows
        self.problems: list[str] = []
        self.by_series: dict[str, list[str]] = {}
        self.unattributed = False
        self.typed: pd.DataFrame | None = None

    def add(
        self,
        message: str,
        kind: str | None = None,
        positions: np.ndarray | None = None,
        series: dict[str, str] | None = None,
        detail: Callable[[int], str] | None = None,
    ) -> None:
        """One problem; ``positions`` (rows) or ``series`` (id -> reason) say whose it is."""
        self.problems.append(message)
        if positions is not None:
            ids = self.uid.to_numpy()[positions]
            for key in pd.unique(ids):
                mine = positions[ids == key]
                self.by_series.setdefault(str(key), []).append(
                    f"{kind} at {_listing(self.rows, mine, detail)}"
                )
        elif series is not None:
            for key, reason in series.items():
                self.by_series.setdefault(str(key), []).append(reason)
        else:
            self.unattributed = True

    def error(self, cfg: DataConfig, headline: str | None = None) -> DataValidationError:
        problems = list(self.problems)
        if self.by_series and self.uid.nunique() > 1:
            shown = list(self.by_series.items())[:MAX_SHOWN]
            more = len(self.by_series) - len(shown)
            problems.append(
                f"{len(self.by_series)} series with problems (invalid_series: "
                f"{cfg.invalid_series}): "
                + "; ".join(f"{k!r}: {', '.join(v)}" for k, v in shown)
                + (f"; and {more} more series" if more > 0 else "")
            )
        listing = "\n".join(f"  - {p}" for p in problems)
        head = headline or f"{len(self.problems)} data problem(s) found"
        return DataValidationError(
            f"{describe_source(cfg.source)}: {head} (rows are 1-based data rows, "
            f"header excluded):\n{listing}",
            problems,
        )


def _check(
    raw: pd.DataFrame, cfg: DataConfig, min_rows: int, max_missing_fraction: float
) -> _Found:
    """Every problem of the raw long frame, and the typed frame."""
    source = describe_source(cfg.source)
    value_columns = ["y", *cfg.exog_columns]
    absent = [c for c in ("unique_id", "ds", *value_columns) if c not in raw.columns]
    if absent:
        raise DataValidationError(
            f"{source}: columns {absent} missing from the loaded frame "
            f"(have {list(raw.columns)}); load it with load_raw",
            [f"missing columns {absent}"],
        )
    if not raw.index.equals(pd.RangeIndex(len(raw))):
        raw = raw.reset_index(drop=True)  # a copy only when positions and labels differ
    first_row = 1 + (cfg.rows.start if cfg.rows else 0)
    rows = np.arange(len(raw)) + first_row
    names = {
        "unique_id": _label(cfg.id_column or "unique_id", "id"),
        "ds": _label(cfg.time_column, "time"),
        "y": _label(cfg.target_column, "target"),
        **{c: _label(c, "exogenous") for c in cfg.exog_columns},
    }

    uid = raw["unique_id"]
    if pd.api.types.infer_dtype(uid, skipna=False) != "string":  # else strings already
        uid = uid.astype(str)
    found = _Found(uid, rows)
    id_missing = raw["unique_id"].isna().to_numpy()
    if id_missing.any():
        found.add(
            f"column {names['unique_id']}: {id_missing.sum()} missing series id(s) at "
            + _listing(rows, np.flatnonzero(id_missing))
        )
    codes, uniques = pd.factorize(uid)  # series numbers, in order of first appearance
    multi = len(uniques) > 1

    def where(pos: int) -> str:
        return f"series {uid.iat[pos]!r}, " if multi else ""

    ds, bad_ds = _parse_timestamps(raw["ds"])
    if bad_ds.any():
        found.add(
            f"column {names['ds']}: {bad_ds.sum()} missing or unparsable timestamp(s) at "
            + _listing(rows, np.flatnonzero(bad_ds), lambda p: f"{raw['ds'].iat[p]!r}"),
            "missing or unparsable timestamps",
            np.flatnonzero(bad_ds & ~id_missing),
            detail=lambda p: f"{raw['ds'].iat[p]!r}",
        )
    _order_problems(uid, codes, ds, ~bad_ds & ~id_missing, rows, cfg, names["ds"], where, found)

    typed: dict[str, pd.Series] = {}
    for col in value_columns:
        values, missing, bad = _parse_numeric(raw[col])
        typed[col] = values
        if bad.any():
            found.add(
                f"column {names[col]}: {bad.sum()} non-numeric value(s) at "
                + _listing(rows, np.flatnonzero(bad), lambda p, c=col: f"{raw[c].iat[p]!r}"),
                f"non-numeric {names[col]}",
                np.flatnonzero(bad & ~id_missing),
                detail=lambda p, c=col: f"{raw[c].iat[p]!r}",
            )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            found.add(
                f"column {names[col]}: {infinite.sum()} infinite value(s) at "
                + _listing(rows, np.flatnonzero(infinite), lambda p, v=values: f"{v.iat[p]}"),
                f"infinite {names[col]}",
                np.flatnonzero(infinite & ~id_missing),
            )
        for message, series, reason in _missing_problems(
            uid, missing, rows, names[col], max_missing_fraction
        ):
            found.add(message, series={series: reason})

    if raw.empty:
        found.add(
            f"no data rows (rows slice: {cfg.rows.model_dump() if cfg.rows else 'all rows'}); "
            f"the configured windows need at least {min_rows} rows per series"
        )
    if id_missing.any():
        sizes = uid[~id_missing].groupby(uid[~id_missing], sort=False).size()
    else:  # the same counts, in the same order, without hashing every id again
        sizes = pd.Series(np.bincount(codes, minlength=len(uniques)), index=uniques)
    short = sizes[sizes < min_rows]
    if len(short):
        shown = ", ".join(f"series {k!r} has {n} rows" for k, n in short.iloc[:MAX_SHOWN].items())
        more = f" ({len(short)} series in total)" if len(short) > MAX_SHOWN else ""
        found.add(
            f"{shown}{more}; the configured windows need at least {min_rows} rows per series "
            "(training history + horizon + validation + test rows, from split and horizon)",
            series={k: f"too short ({n} rows, {min_rows} needed)" for k, n in short.items()},
        )
    found.typed = pd.DataFrame({"unique_id": uid, "ds": ds, **typed}, copy=False)
    return found


def _label(column: str, role: str) -> str:
    return f"{column!r} ({role})"


def _listing(
    rows: np.ndarray, positions: np.ndarray, detail: Callable[[int], str] | None = None
) -> str:
    """'row 3 (detail), row 7 (detail) and 4 more' for the first MAX_SHOWN positions."""
    shown = [
        f"row {rows[p]}" + (f" ({detail(int(p))})" if detail else "") for p in positions[:MAX_SHOWN]
    ]
    more = f" and {len(positions) - MAX_SHOWN} more" if len(positions) > MAX_SHOWN else ""
    return ", ".join(shown) + more


def _parse_timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Timestamps as naive datetime64[ns] (aware ones converted to UTC) and the bad mask."""
    if values.dtype == "datetime64[ns]":  # naive already: nothing to parse or copy
        return values, values.isna().to_numpy()
    with warnings.catch_warnings():
        # An unparsable first value makes pandas fall back to per-value parsing and warn.
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(values, errors="coerce", utc=True)
    parsed = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    return parsed, parsed.isna().to_numpy()


def _order_problems(
    uid: pd.Series,
    codes: np.ndarray,
    ds: pd.Series,
    usable: np.ndarray,
    rows: np.ndarray,
    cfg: DataConfig,
    name: str,
    where: Callable[[int], str],
    found: _Found,
) -> None:
    """Duplicate, decreasing and off-frequency timestamps within each series."""
    try:
        offset = to_offset(cfg.freq)
    except ValueError:
        found.add(f"freq {cfg.freq!r} is not a pandas frequency alias (e.g. h, D, 15min)")
        return
    pos = np.arange(len(ds))
    prev_pos = _previous_rows(codes)
    has_prev = prev_pos >= 0
    values = ds.to_numpy()
    prev_ds = values[np.maximum(prev_pos, 0)]
    prev_ds[~has_prev] = np.datetime64("NaT")
    # Pairs with a bad row on either side are skipped: that row is reported already.
    pair_ok = usable & has_prev & usable[np.maximum(prev_pos, 0)]
    step = values - prev_ds

    # Usable rows each later than a usable previous row of their series cannot repeat a
    # timestamp: only otherwise is every (series, timestamp) pair looked up.
    increasing = ~(usable & has_prev) | (pair_ok & (step > np.timedelta64(0)))
    duplicated = np.zeros(len(ds), dtype=bool)
    if not increasing.all():
        frame = pd.DataFrame({"uid": uid, "ds": ds, "pos": pos})
        duplicated = frame.duplicated(["uid", "ds"]).to_numpy() & usable
    if duplicated.any():
        kept = frame[usable]
        first_pos = kept.groupby(["uid", "ds"], sort=False)["pos"].transform("first")
        first_row = dict(zip(kept["pos"], rows[first_pos.to_numpy()], strict=True))
        found.add(
            f"column {name}: {duplicated.sum()} duplicate timestamp(s) at "
            + _listing(
                rows,
                pos[duplicated],
                lambda p: f"{where(p)}{ds.iat[p]}, same as row {first_row[p]}",
            ),
            "duplicate timestamps",
            pos[duplicated],
        )

    decreasing = pair_ok & (step < np.timedelta64(0))
    if decreasing.any():
        found.add(
            f"column {name}: {decreasing.sum()} timestamp(s) earlier than the previous row "
            "(rows must be in chronological order; they are not sorted automatically) at "
            + _listing(
                rows,
                pos[decreasing],
                lambda p: (
                    f"{where(p)}{ds.iat[p]} after {ds.iat[prev_pos[p]]} at row {rows[prev_pos[p]]}"
                ),
            ),
            "timestamps out of order",
            pos[decreasing],
        )

    if isinstance(offset, pd.offsets.Tick):  # a fixed step (h, min, D): compare the steps
        off_grid = step != np.timedelta64(offset.nanos, "ns")
    else:
        with warnings.catch_warnings():
            # Calendar offsets (MS, W-SUN, B) are applied element-wise; that is fine here.
            warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
            off_grid = values != (pd.Series(prev_ds) + offset).to_numpy()
    irregular = pair_ok & (step > np.timedelta64(0)) & off_grid
    if irregular.any():
        found.add(
            f"column {name}: {irregular.sum()} step(s) that are not the frequency "
            f"{cfg.freq!r} (gaps or off-grid timestamps) at "
            + _listing(
                rows,
                pos[irregular],
                lambda p: (
                    f"{where(p)}{ds.iat[prev_pos[p]]} at row {rows[prev_pos[p]]} -> "
                    f"{ds.iat[p]}, a step of {ds.iat[p] - ds.iat[prev_pos[p]]}"
                ),
            ),
            f"gaps or off-grid timestamps (frequency {cfg.freq!r})",
            pos[irregular],
        )


def _previous_rows(codes: np.ndarray) -> np.ndarray:
    """Position of the previous row of the same series for each row (-1 for a first row);
    ``codes`` numbers the series."""
    prev = np.full(len(codes), -1, dtype=np.int64)
    if len(codes) < 2:
        return prev
    if (codes[1:] >= codes[:-1]).all():  # rows grouped by series: the row before
        same = codes[1:] == codes[:-1]
        prev[1:][same] = np.flatnonzero(same)
        return prev
    order = np.argsort(codes, kind="stable")
    same = codes[order[1:]] == codes[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def _parse_numeric(values: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Float64 values, the missing mask (NaN/empty) and the non-numeric mask."""
    if pd.api.types.is_numeric_dtype(values):
        parsed = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
        missing = parsed.isna().to_numpy()
        return parsed, missing, np.zeros(len(values), dtype=bool)
    missing = (values.isna() | values.astype(str).str.strip().eq("")).to_numpy()
    parsed = pd.to_numeric(values.mask(missing), errors="coerce").astype("float64")
    return parsed, missing, ~missing & parsed.isna().to_numpy()


def _missing_problems(
    uid: pd.Series, missing: np.ndarray, rows: np.ndarray, name: str, limit: float
) -> list[tuple[str, str, str]]:
    """Series whose fraction of missing values in one column exceeds ``limit``:
    (message, series id, short reason) each."""
    if not missing.any():
        return []
    fractions = pd.Series(missing).groupby(uid.to_numpy(), sort=False).agg(["mean", "sum", "size"])
    problems = []
    for series, (fraction, count, size) in fractions[fractions["mean"] > limit].iterrows():
        positions = np.flatnonzero(missing & (uid.to_numpy() == series))
        problems.append(
            (
                f"column {name}: {fraction:.1%} of values missing in series {series!r} "
                f"({int(count)} of {int(size)}), more than max_missing_fraction {limit:.1%}; "
                "missing at " + _listing(rows, positions),
                series,
                f"{fraction:.1%} of {name} missing",
            )
        )
    return problems
