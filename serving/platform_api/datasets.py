"""Uploads read into frames, dataset profiles, and the three data operations.

Cleaning, feature selection and splitting call ``pipelines.tabular``'s own functions (the ones
training uses): ``clean_training_rows``, ``OutlierClipper``, ``build_columns`` +
``build_selector``, ``validate_table`` and ``split_parts``. Every problem raises
``DatasetError`` with the HTTP status and a message naming the column, value or limit.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipelines.config import ParquetSource
from pipelines.data.validate import DataValidationError
from pipelines.tabular.config import (
    CvConfig,
    FeatureSelectionConfig,
    OutlierConfig,
    SplitConfig,
    TabularConfig,
    TabularDataConfig,
    TabularPreprocessConfig,
)
from pipelines.tabular.data import SPLIT_COLUMN, split_parts, validate_table
from pipelines.tabular.preprocess import (
    OutlierClipper,
    build_columns,
    build_selector,
    clean_training_rows,
)

FORMATS = {".csv": "csv", ".txt": "csv", ".xlsx": "excel", ".xls": "excel",
           ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
Task = Literal["classification", "regression", "anomaly"]


class DatasetError(ValueError):
    """Bad input: ``status`` is the HTTP status, the message names the problem."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def read_upload(filename: str, data: bytes) -> pd.DataFrame:
    """The uploaded file as a frame (format from the extension); column names as strings."""
    suffix = Path(filename).suffix.lower()
    kind = FORMATS.get(suffix)
    if kind is None:
        raise DatasetError(
            f"file {filename!r}: unsupported extension {suffix or '(none)'!r}; "
            f"upload CSV, Excel or Parquet ({', '.join(sorted(FORMATS))})", 415
        )  # fmt: skip
    if not data:
        raise DatasetError(f"file {filename!r} is empty")
    try:
        if kind == "csv":
            frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", low_memory=False)
        elif kind == "excel":
            frame = pd.read_excel(io.BytesIO(data))
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # every parser error is the file's problem
        raise DatasetError(f"file {filename!r}: cannot read it as {kind}: {exc}") from exc
    if frame.columns.duplicated().any():
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DatasetError(f"file {filename!r}: duplicate column name(s) {dupes}")
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty or not len(frame.columns):
        raise DatasetError(f"file {filename!r}: no data rows")
    return storable(frame)


def storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed value types (Excel) as strings, so Parquet can hold them."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if values.dtype == object and values.dropna().map(type).nunique() > 1:
            frame[col] = values.map(lambda v: v if pd.isna(v) else str(v))
    return frame


def check_columns(frame: pd.DataFrame, columns: list[str | None], what: str) -> None:
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{what}: column(s) {missing} not in the dataset; columns: {list(frame.columns)}"
        )


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def profile(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows, and per column: dtype, missing values, and numeric statistics or top values."""
    columns = []
    for col in frame.columns:
        values = frame[col]
        entry: dict[str, Any] = {
            "name": col,
            "dtype": str(values.dtype),
            "missing": int(values.isna().sum()),
            "unique": int(values.nunique()),
        }
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            stats = values.astype("float64").describe()
            entry["stats"] = {k: _number(stats[k]) for k in
                              ("mean", "std", "min", "25%", "50%", "75%", "max")}  # fmt: skip
        else:
            top = values.astype(str)[values.notna()].value_counts().head(5)
            entry["top"] = {str(k): int(v) for k, v in top.items()}
        columns.append(entry)
    return {"rows": len(frame), "columns": columns}


# ----- operations ------------------------------------------------------------------------------
@dataclass
class Result:
    """A new version's frame, the parameters that made it and what changed."""

    frame: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _config(
    path: str,
    task: str,
    target: str | None,
    *,
    preprocess: TabularPreprocessConfig | None = None,
    selection: FeatureSelectionConfig | None = None,
    split: SplitConfig | None = None,
    time_column: str | None = None,
    seed: int = 42,
) -> TabularConfig:
    """The parts of a tabular experiment config the shared functions read (validated pieces,
    assembled without the algorithm list a full experiment needs)."""
    from pipelines.tabular.config import TabularTuningConfig

    data = TabularDataConfig.model_construct(
        source=ParquetSource.model_construct(path=path), target_column=target,
        time_column=time_column,
        feature_columns=None, categorical_columns=None, id_columns=[], leakage_columns=[],
        rows=None, max_missing_fraction=1.0,
    )  # fmt: skip
    return TabularConfig.model_construct(
        name="platform-api", task=task, data=data,
        preprocess=preprocess or TabularPreprocessConfig(),
        feature_selection=selection or FeatureSelectionConfig(),
        split=split or SplitConfig(), cv=CvConfig(folds=2),
        tuning=TabularTuningConfig(seed=seed),
    )  # fmt: skip


def _kinds(frame: pd.DataFrame, skip: set[str]) -> tuple[list[str], list[str]]:
    cols = [c for c in frame.columns if c not in skip]
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(frame[c])]
    return numeric, [c for c in cols if c not in numeric]


def clean(
    frame: pd.DataFrame,
    target: str | None,
    numeric_imputation: str,
    categorical_imputation: str,
    outliers: OutlierConfig,
    drop_duplicates: bool,
    drop_columns: list[str],
) -> Result:
    """Drop columns and duplicate rows, drop rows without a label, then the tabular
    pipeline's row cleaning (drop / ffill / bfill, outlier rows) and its imputers and
    outlier clipping for what remains."""
    check_columns(frame, list(drop_columns), "drop_columns")
    if target in drop_columns:
        raise DatasetError(f"drop_columns: {target!r} is the dataset's target column")
    before = len(frame)
    frame = frame.drop(columns=drop_columns)
    if drop_duplicates:
        frame = frame.drop_duplicates()
    duplicates = before - len(frame)
    unlabelled = 0
    if target is not None:
        unlabelled = int(frame[target].isna().sum())
        frame = frame[frame[target].notna()]
    skip = {target, SPLIT_COLUMN} - {None}
    numeric, categorical = _kinds(frame, skip)
    pre = TabularPreprocessConfig(
        numeric_imputation=numeric_imputation, categorical_imputation=categorical_imputation,
        outliers=outliers,
    )  # fmt: skip
    cfg = _config("", "regression", target, preprocess=pre)
    missing_before = int(frame[numeric + categorical].isna().sum().sum())
    frame = clean_training_rows(frame, numeric, categorical, cfg)
    if frame.empty:
        raise DatasetError("cleaning would leave no rows; choose another imputation than drop")
    frame = frame.copy()
    from sklearn.impute import SimpleImputer

    if numeric and numeric_imputation in ("mean", "median") and frame[numeric].isna().any().any():
        filled = [c for c in numeric if frame[c].notna().any()]
        frame[filled] = SimpleImputer(strategy=numeric_imputation).fit_transform(frame[filled])
    if categorical and categorical_imputation == "mode":
        filled = [c for c in categorical if frame[c].notna().any()]
        if filled and frame[filled].isna().any().any():
            imputer = SimpleImputer(strategy="most_frequent")
            values = frame[filled].astype(object)
            frame[filled] = imputer.fit_transform(values.where(values.notna(), np.nan))
    if outliers.method != "none" and outliers.action == "clip" and numeric:
        clipper = OutlierClipper(outliers.method, outliers.threshold)
        frame[numeric] = clipper.fit_transform(frame[numeric])
    return Result(
        frame.reset_index(drop=True),
        {
            "rows_before": before,
            "rows_after": len(frame),
            "duplicates_dropped": duplicates,
            "unlabelled_dropped": unlabelled,
            "columns_dropped": list(drop_columns),
            "missing_before": missing_before,
            "missing_after": int(frame[numeric + categorical].isna().sum().sum()),
        },
    )


def select_features(
    frame: pd.DataFrame,
    path: str,
    target: str,
    task: Task,
    method: str,
    n_features: int | None,
    keep_columns: list[str],
    seed: int,
) -> Result:
    """The tabular pipeline's selector on its own column transformer (ordinal encoding, so
    every output is one source column); the new version keeps the selected columns, the
    target and ``keep_columns``."""
    check_columns(frame, list(keep_columns), "keep_columns")
    keep = [c for c in frame.columns if c in keep_columns or c in (target, SPLIT_COLUMN)]
    pre = TabularPreprocessConfig(encoding="ordinal")
    selection = FeatureSelectionConfig(method=method, n_features=n_features)
    cfg = _config(path, task, target, preprocess=pre, selection=selection, seed=seed)
    cfg.data.id_columns = [c for c in keep if c != target]
    try:
        validated = validate_table(frame, cfg)
    except DataValidationError as exc:
        raise DatasetError(str(exc)) from exc
    features = validated.numeric + validated.categorical
    y = validated.frame[target]
    y = y.factorize()[0] if task != "regression" else y.to_numpy(float)
    columns = build_columns(validated.numeric, validated.categorical, cfg)
    Xt = columns.fit_transform(validated.frame[features], y)
    selector = build_selector(cfg, Xt.shape[1])
    try:
        selector.fit(Xt, y)
    except ValueError as exc:
        raise DatasetError(f"feature selection {method}: {exc}") from exc
    names = [str(n) for n in columns.get_feature_names_out()]
    support = selector.get_support()
    selected = [n for n, s in zip(names, support, strict=True) if s]
    scores = _scores(selector)
    return Result(
        frame[[c for c in frame.columns if c in selected or c in keep]].copy(),
        {
            "method": method,
            "selected": selected,
            "dropped": [n for n in names if n not in selected] + sorted(validated.dropped),
            "scores": None if scores is None else
            {n: _number(s) for n, s in zip(names, scores, strict=True)},
        },
    )  # fmt: skip


def _scores(selector: Any) -> np.ndarray | None:
    if hasattr(selector, "scores_"):
        return np.asarray(selector.scores_, dtype=float)
    if hasattr(selector, "ranking_"):
        return -np.asarray(selector.ranking_, dtype=float)
    estimator = getattr(selector, "estimator_", None)
    return getattr(estimator, "feature_importances_", None)


def split(
    frame: pd.DataFrame,
    path: str,
    target: str | None,
    task: Task,
    split_cfg: SplitConfig,
    time_column: str | None,
) -> Result:
    """The tabular pipeline's ``split_parts``: a ``__split__`` column naming each row's part."""
    check_columns(frame, [time_column], "time_column")
    if task != "anomaly" and target is None:
        raise DatasetError(f"task {task}: the dataset has no target column")
    cfg = _config(path, task, target, split=split_cfg, time_column=time_column)
    typed = frame
    if time_column:
        typed = frame.assign(**{time_column: pd.to_datetime(frame[time_column], errors="coerce")})
        bad = typed[time_column].isna() & frame[time_column].notna()
        if bad.any():
            rows = (np.flatnonzero(bad) + 1)[:5].tolist()
            raise DatasetError(f"time_column {time_column!r}: unparsable times at rows {rows}")
    if target is not None and frame[target].isna().any():
        rows = (np.flatnonzero(frame[target].isna()) + 1)[:5].tolist()
        raise DatasetError(f"target {target!r}: missing labels at rows {rows}; clean first")
    try:
        parts = split_parts(typed, cfg)
    except ValueError as exc:
        raise DatasetError(f"split: {exc}") from exc
    counts = {p: int((parts == p).sum()) for p in ("train", "val", "test")}
    return Result(frame.assign(**{SPLIT_COLUMN: parts}), {"parts": counts})
