"""Read a tabular source, validate it (errors name column and rows) and split it.

Row numbers in messages are 1-based data rows of the source (header excluded), counted from
the start of the source even when ``rows`` selects a slice, as in ``pipelines.data.validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines import artifact_store
from pipelines.config import CsvSource, ParquetSource, SqlSource
from pipelines.data.validate import DataValidationError, _listing, describe_source
from pipelines.tabular.config import (
    ExcelSource,
    FeastSource,
    SklearnSource,
    TabularConfig,
    TabularDataConfig,
)

SPLIT_COLUMN = "__split__"
"""Column of the prepared frame naming each row's part: train, val or test."""


def source_name(cfg: TabularDataConfig) -> str:
    if isinstance(cfg.source, ExcelSource):
        return f"Excel file {cfg.source.path} (sheet {cfg.source.sheet!r})"
    if isinstance(cfg.source, SklearnSource):
        return f"scikit-learn dataset {cfg.source.name!r}"
    if isinstance(cfg.source, FeastSource):
        return f"feature view {cfg.source.view!r} at the events of {cfg.source.events}"
    return describe_source(cfg.source)


def read_table(cfg: TabularDataConfig) -> pd.DataFrame:
    """Rows ``cfg.rows`` of the source, every column, values as the reader gives them."""
    source = cfg.source
    try:
        if isinstance(source, CsvSource):
            with artifact_store.opened(source.path) as handle:
                frame = pd.read_csv(handle, encoding="utf-8-sig", low_memory=False)
        elif isinstance(source, ParquetSource):
            with artifact_store.opened(source.path) as handle:
                frame = pd.read_parquet(handle)
        elif isinstance(source, ExcelSource):
            with artifact_store.opened(source.path) as handle:
                frame = pd.read_excel(handle, sheet_name=source.sheet)
        elif isinstance(source, SklearnSource):
            frame = _read_sklearn(source.name)
        elif isinstance(source, FeastSource):
            frame = _read_feast(source)
        else:
            frame = _read_sql(source)
    except (OSError, ValueError, ImportError) as exc:
        problem = f"cannot read {source_name(cfg)}: {type(exc).__name__}: {exc}"
        raise DataValidationError(problem, [problem]) from exc
    start = cfg.rows.start if cfg.rows else 0
    stop = cfg.rows.stop if cfg.rows else None
    return frame.iloc[start:stop].reset_index(drop=True)


def _read_sklearn(name: str) -> pd.DataFrame:
    """Features and ``target`` of a dataset bundled with scikit-learn (diabetes unscaled)."""
    from sklearn import datasets

    kwargs = {"scaled": False} if name == "diabetes" else {}
    return getattr(datasets, f"load_{name}")(as_frame=True, **kwargs).frame


def _read_feast(source: FeastSource) -> pd.DataFrame:
    """The events with the view's features joined point in time (Feast's offline store)."""
    from pipelines.feature_store import FeatureStoreError, historical_features
    from pipelines.home import TidemillHome

    with artifact_store.opened(source.events) as handle:
        events = (pd.read_parquet(handle) if source.events.endswith(".parquet")
                  else pd.read_csv(handle, encoding="utf-8-sig"))
    try:
        return historical_features(TidemillHome.resolve(), events, source.features, source.view)
    except FeatureStoreError as exc:
        raise ValueError(str(exc)) from exc


def _read_sql(source: SqlSource) -> pd.DataFrame:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(source.url)
        with engine.connect() as conn:
            return pd.read_sql(text(source.query), conn)
    except SQLAlchemyError as exc:
        raise ValueError(f"query failed: {exc}\nquery: {source.query}") from exc


@dataclass
class Validated:
    """The typed frame (features, then the target) and what validation decided."""

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why


def validate_table(raw: pd.DataFrame, cfg: TabularConfig) -> Validated:
    """Check the raw frame; return it typed or raise one error listing every problem."""
    data = cfg.data
    source = source_name(data)
    rows = np.arange(len(raw)) + 1 + (data.rows.start if data.rows else 0)
    available = list(raw.columns)
    named = {
        "target_column": [data.target_column] if data.target_column else [],
        "feature_columns": data.feature_columns or [],
        "categorical_columns": data.categorical_columns or [],
        "id_columns": data.id_columns,
        "leakage_columns": data.leakage_columns,
        "time_column": [data.time_column] if data.time_column else [],
    }
    missing = [f"{c!r} ({role})" for role, cols in named.items() for c in cols if c not in raw]
    if missing:
        problem = f"column(s) {', '.join(missing)} not found; available columns: {available}"
        raise DataValidationError(f"{source}: {problem}", [problem])
    if raw.empty:
        raise DataValidationError(f"{source}: no data rows", ["no data rows"])

    dropped: dict[str, str] = {c: "leakage column (config)" for c in data.leakage_columns}
    not_features = {*named["target_column"], *data.id_columns, *named["time_column"], *dropped}
    features = [c for c in (data.feature_columns or available) if c not in not_features]
    problems: list[str] = []

    target = None
    if data.target_column:
        target, target_problems = _check_target(raw[data.target_column], cfg, rows)
        problems += target_problems

    typed: dict[str, pd.Series] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    declared = set(data.categorical_columns or [])
    for col in features:
        values = raw[col]
        missing_mask = values.isna() | values.astype(str).str.strip().eq("")
        if missing_mask.all():
            dropped[col] = "all values missing"
            continue
        if values[~missing_mask].nunique() == 1:
            dropped[col] = f"constant ({values[~missing_mask].iloc[0]!r})"
            continue
        fraction = missing_mask.mean()
        if fraction > data.max_missing_fraction:
            problems.append(
                f"column {col!r}: {fraction:.1%} of values missing, more than "
                f"max_missing_fraction {data.max_missing_fraction:.1%}; missing at "
                + _listing(rows, np.flatnonzero(missing_mask))
            )
        parsed = pd.to_numeric(values.mask(missing_mask), errors="coerce").astype("float64")
        bad = (~missing_mask & parsed.isna()).to_numpy()
        is_categorical = col in declared or (
            data.categorical_columns is None and bad.sum() > 0.5 * (~missing_mask).sum()
        )
        if is_categorical:
            categorical.append(col)
            typed[col] = (
                values.mask(missing_mask)
                .astype("object")
                .map(lambda v: np.nan if pd.isna(v) else str(v))
            )
            continue
        numeric.append(col)
        typed[col] = parsed
        if bad.any():
            problems.append(
                f"column {col!r} (numeric feature): {bad.sum()} non-numeric value(s) at "
                + _listing(rows, np.flatnonzero(bad), lambda p, v=values: f"{v.iat[p]!r}")
            )
        infinite = np.isinf(parsed.to_numpy())
        if infinite.any():
            problems.append(
                f"column {col!r}: {infinite.sum()} infinite value(s) at "
                + _listing(rows, np.flatnonzero(infinite))
            )
    if not numeric and not categorical:
        problems.append(f"no usable feature columns (dropped: {dropped})")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise DataValidationError(
            f"{source}: {len(problems)} data problem(s) found (rows are 1-based data rows, "
            f"header excluded):\n{listing}",
            problems,
        )
    frame = pd.DataFrame(typed)
    if data.time_column:
        frame[data.time_column] = pd.to_datetime(raw[data.time_column], errors="coerce")
    if target is not None:
        frame[data.target_column] = target
    return Validated(frame, numeric, categorical, dropped)


def _check_target(
    values: pd.Series, cfg: TabularConfig, rows: np.ndarray
) -> tuple[pd.Series, list[str]]:
    """The typed target and its problems: missing labels, non-numeric regression targets,
    too few classes or too few rows of a class for a stratified split with CV."""
    name = f"column {cfg.data.target_column!r} (target)"
    missing = (values.isna() | values.astype(str).str.strip().eq("")).to_numpy()
    problems = []
    if missing.any():
        problems.append(
            f"{name}: {missing.sum()} missing label(s) at "
            + _listing(rows, np.flatnonzero(missing))
        )
    if cfg.task == "regression":
        parsed = pd.to_numeric(values.mask(missing), errors="coerce").astype("float64")
        bad = ~missing & parsed.isna().to_numpy()
        if bad.any():
            problems.append(
                f"{name}: {bad.sum()} non-numeric value(s) at "
                + _listing(rows, np.flatnonzero(bad), lambda p: f"{values.iat[p]!r}")
            )
        return parsed, problems
    counts = values[~missing].value_counts()
    if len(counts) < 2:
        problems.append(f"{name}: needs at least 2 classes, found {counts.to_dict()}")
    if cfg.task == "anomaly" and len(counts) > 2:
        problems.append(f"{name}: anomaly labels must be binary, found {sorted(counts.index)}")
    need = max(cfg.cv.folds, 3)
    rare = counts[counts < need]
    if len(rare):
        problems.append(
            f"{name}: class(es) {rare.to_dict()} have fewer than {need} rows; a stratified "
            f"split into train/val/test with {cfg.cv.folds}-fold CV needs at least {need}"
        )
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return values, problems


def split_parts(frame: pd.DataFrame, cfg: TabularConfig) -> np.ndarray:
    """``train``/``val``/``test`` per row: chronological when ``time_column`` is set, else
    shuffled with ``seed`` and stratified by the label (classification, labelled anomaly)."""
    from sklearn.model_selection import train_test_split

    n = len(frame)
    n_test = max(1, round(cfg.split.test_size * n))
    n_val = max(1, round(cfg.split.val_size * n))
    parts = np.empty(n, dtype=object)
    if cfg.data.time_column:
        order = np.argsort(frame[cfg.data.time_column].to_numpy(), kind="stable")
        parts[order[: n - n_val - n_test]] = "train"
        parts[order[n - n_val - n_test : n - n_test]] = "val"
        parts[order[n - n_test :]] = "test"
        return parts
    labels = frame[cfg.data.target_column].astype(str).to_numpy() if cfg.labelled else None
    stratify = cfg.split.stratify and cfg.task != "regression" and labels is not None
    idx = np.arange(n)
    rest, test = train_test_split(
        idx, test_size=n_test, random_state=cfg.split.seed, stratify=labels if stratify else None
    )
    train, val = train_test_split(
        rest,
        test_size=n_val,
        random_state=cfg.split.seed,
        stratify=labels[rest] if stratify else None,
    )
    parts[train], parts[val], parts[test] = "train", "val", "test"
    return parts
