"""Read the configured source into Nixtla's long format, without coercing any value.

Types are left as the reader gives them so that ``validate`` can report the exact rows of
bad values. The SQL and Parquet readers are imported only when such a source is used.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from pipelines import artifact_store
from pipelines.config import CsvSource, DataConfig, ParquetSource, SqlSource
from pipelines.data.validate import DataValidationError, describe_source

RESERVED = ("unique_id", "ds", "y")
"""Column names of the long format; exogenous columns may not use them."""


def load_raw(cfg: DataConfig) -> pd.DataFrame:
    """Rows ``cfg.rows`` of the source as ``unique_id, ds, y, *exog_columns`` (raw values)."""
    _check_roles(cfg)
    source = cfg.source
    start = cfg.rows.start if cfg.rows else 0
    stop = cfg.rows.stop if cfg.rows else None
    if isinstance(source, CsvSource):
        frame = _read_csv(source, cfg, start, stop)
    elif isinstance(source, ParquetSource):
        frame = _read_parquet(source, cfg).iloc[start:stop]
    else:
        frame = _read_sql(source, cfg).iloc[start:stop]
    frame = frame.reset_index(drop=True)
    return pd.DataFrame(
        {
            "unique_id": frame[cfg.id_column] if cfg.id_column else cfg.series_id,
            "ds": frame[cfg.time_column],
            "y": frame[cfg.target_column],
            **{c: frame[c] for c in cfg.exog_columns},
        },
        index=frame.index,
    )


def _needed(cfg: DataConfig) -> dict[str, str]:
    """Source column -> its role, for the columns the config uses."""
    roles = {cfg.time_column: "time_column", cfg.target_column: "target_column"}
    if cfg.id_column:
        roles[cfg.id_column] = "id_column"
    roles.update({c: "exogenous.historical" for c in cfg.exogenous.historical})
    roles.update({c: "exogenous.future" for c in cfg.exogenous.future})
    return roles


def _check_roles(cfg: DataConfig) -> None:
    """Each source column has one role and the long-format names stay unique."""
    named = [cfg.time_column, cfg.target_column, *filter(None, [cfg.id_column])]
    problems = [f"column {c!r} is used twice" for c in sorted(set(named)) if named.count(c) > 1]
    seen: set[str] = set()
    for col in cfg.exog_columns:
        if col in seen or col in named or col in RESERVED:
            problems.append(
                f"exogenous column {col!r} repeats a time/target/id column, another exogenous "
                f"column or a long-format name {list(RESERVED)}"
            )
        seen.add(col)
    if problems:
        raise DataValidationError(
            f"{describe_source(cfg.source)}: invalid column roles: {'; '.join(problems)}",
            problems,
        )


def _check_columns(available: Iterable[str], cfg: DataConfig) -> None:
    """Every configured column exists in the source; name the missing and the available."""
    available = list(available)
    missing = [f"{col!r} ({role})" for col, role in _needed(cfg).items() if col not in available]
    if missing:
        problem = f"column(s) {', '.join(missing)} not found; available columns: {available}"
        raise DataValidationError(f"{describe_source(cfg.source)}: {problem}", [problem])


def _unreadable(path: str, exc: Exception) -> DataValidationError:
    problem = f"cannot read {path}: {type(exc).__name__}: {exc}"
    return DataValidationError(problem, [problem])


def _read_csv(source: CsvSource, cfg: DataConfig, start: int, stop: int | None) -> pd.DataFrame:
    """Only the needed columns and rows; time and id columns stay strings."""
    try:
        with artifact_store.opened(source.path) as handle:
            header = pd.read_csv(handle, nrows=0).columns
    except (OSError, ValueError) as exc:
        raise _unreadable(source.path, exc) from exc
    _check_columns(header, cfg)
    try:
        with artifact_store.opened(source.path) as handle:
            return pd.read_csv(
                handle,
                usecols=list(_needed(cfg)),
                dtype={c: str for c in (cfg.time_column, cfg.id_column) if c},
                skiprows=range(1, start + 1),
                nrows=None if stop is None else stop - start,
                low_memory=False,
            )
    except (OSError, ValueError) as exc:
        raise _unreadable(source.path, exc) from exc


def _read_parquet(source: ParquetSource, cfg: DataConfig) -> pd.DataFrame:
    """The needed columns as plain columns (a stored pandas index is not restored)."""
    import pyarrow.parquet as pq

    try:
        with artifact_store.opened(source.path) as handle:
            available = pq.read_schema(handle).names
    except (OSError, ValueError) as exc:
        raise _unreadable(source.path, exc) from exc
    _check_columns(available, cfg)
    try:
        with artifact_store.opened(source.path) as handle:
            table = pq.read_table(handle, columns=list(_needed(cfg)))
    except (OSError, ValueError) as exc:
        raise _unreadable(source.path, exc) from exc
    return table.to_pandas(ignore_metadata=True)


def _read_sql(source: SqlSource, cfg: DataConfig) -> pd.DataFrame:
    """Run the query through SQLAlchemy; errors name the source (password masked)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(source.url)
    except (SQLAlchemyError, ImportError) as exc:
        raise DataValidationError(f"{describe_source(source)}: cannot connect: {exc}") from exc
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(text(source.query), conn)
    except SQLAlchemyError as exc:
        raise DataValidationError(
            f"{describe_source(source)}: cannot run the query: {exc}\nquery: {source.query}"
        ) from exc
    finally:
        engine.dispose()
    _check_columns(frame.columns, cfg)
    return frame
