"""Drift check of the champion with Evidently 0.7, and the drift decision.

Inputs are long-format frames (``unique_id, ds, y`` + exogenous columns): ``reference`` is the
champion's training snapshot, ``current`` the latest ingested window. ``predictions`` is the
prediction log flattened to one row per forecast step: ``ds, yhat, yhat_lower, yhat_upper``,
optional ``variant`` and ``unique_id``, and ``y`` where the actual is known (NaN otherwise).

Evidently reports (each an Evidently snapshot):

- ``data_drift``: ``DataDriftPreset`` on ``y`` and the exogenous columns, current vs reference.
- ``prediction_drift``: ``ValueDrift`` of the served ``yhat`` against the reference ``y``.
- ``quality_<variant>``: ``RegressionQuality`` and interval coverage (``MeanValue`` of
  ``in_interval``) on the steps with actuals, per variant with at least ``min_actuals`` of them.

Per-column drift uses one explicit method for every size. Evidently's default switches from
p-values (K-S) to distances (normed Wasserstein) above 1000 reference rows, so the meaning of a
threshold would change with the window; here the default is always the normed Wasserstein
distance: the distance between the two distributions in units of the reference standard
deviation (a level shift of ``k`` standard deviations scores about ``k``). A column drifts when
its score is >= ``column_threshold``; Evidently 0.7 has no dataset-drift flag, so data drift is
the share of drifted columns >= ``drift_share``. Only distance methods are accepted, so
"score >= threshold" always means drift. See bench/RESULTS.md ("Drift detection") for the
false-alarm and detection rates these defaults give on ETTh1.

The decision: drift when the data drift share is reached, when the champion's interval
coverage is outside ``coverage_band``, or when its live MAE exceeds the validation MAE by more
than ``error_margin`` (the last two need ``min_actuals`` actuals). Prediction drift is reported
and exported but does not decide on its own: the served forecasts follow the inputs, so it
mostly repeats the data drift, and without actuals it cannot tell a good adaptation from an
error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Regression, Report
from evidently.core.report import Snapshot
from evidently.metrics import MeanValue, ValueDrift
from evidently.presets import DataDriftPreset, RegressionQuality

TARGET = "y"
KEY_COLUMNS = ("unique_id", "ds")
PREDICTION = "prediction"
DEFAULT_VARIANT = "champion"
DISTANCE_METHODS = ("wasserstein", "psi", "jensenshannon", "hellinger", "kl_div", "ed")
"""Evidently methods whose score grows with drift (p-value tests would invert the rule)."""


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the drift decision (defaults suit hourly data and a 90% interval).

    - ``method``/``column_threshold``: per-column Evidently drift method and its threshold
      (normed Wasserstein distance in reference standard deviations by default).
    - ``drift_share``: data drift when at least this share of the columns drift.
    - ``reference_rows``: use only the last rows of each reference series (the recent part of
      the training snapshot; ``None`` = all of it). 2160 = 90 days of hourly data.
    - ``coverage_band``: interval coverage outside ``[low, high]`` is drift.
    - ``error_margin``: live MAE above ``champion val_mae * (1 + error_margin)`` is drift.
    - ``min_actuals``: the coverage and error rules need at least this many actuals.
    - ``champion_variant``: the prediction-log variant the coverage and error rules judge.
    """

    method: str = "wasserstein"
    column_threshold: float = 1.0
    drift_share: float = 0.5
    reference_rows: int | None = 2160
    coverage_band: tuple[float, float] = (0.8, 0.99)
    error_margin: float = 0.25
    min_actuals: int = 24
    champion_variant: str = DEFAULT_VARIANT

    def __post_init__(self) -> None:
        if self.method not in DISTANCE_METHODS:
            raise ValueError(
                f"method {self.method!r} is not a distance; use one of {DISTANCE_METHODS}"
            )
        low, high = self.coverage_band
        if not 0 <= low < high <= 1:
            raise ValueError(f"coverage_band must satisfy 0 <= low < high <= 1, got {low, high}")
        if not 0 < self.drift_share <= 1:
            raise ValueError(f"drift_share must be in (0, 1], got {self.drift_share}")
        if self.column_threshold <= 0 or self.error_margin < 0 or self.min_actuals < 1:
            raise ValueError("column_threshold > 0, error_margin >= 0, min_actuals >= 1 needed")
        if self.reference_rows is not None and self.reference_rows < 2:
            raise ValueError(f"reference_rows must be >= 2 or None, got {self.reference_rows}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> DriftConfig:
        """A config from a mapping (e.g. a YAML ``monitoring:`` section); unknown keys raise."""
        data = dict(data or {})
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown drift config key(s): {', '.join(unknown)}")
        if "coverage_band" in data:
            data["coverage_band"] = tuple(float(v) for v in data["coverage_band"])
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"coverage_band": list(self.coverage_band)}


@dataclass(frozen=True)
class VariantQuality:
    """Live accuracy of one variant on the forecast steps whose actual is known."""

    n_actuals: int
    mae: float
    coverage: float


@dataclass
class DriftResult:
    """Scores, the decision with its reasons, and the Evidently snapshots behind them."""

    detected: bool
    reasons: list[str]
    drift_share: float
    column_scores: dict[str, float]
    drifted_columns: list[str]
    prediction_drift: float | None
    quality: dict[str, VariantQuality]
    champion_val_mae: float | None
    notes: list[str]
    config: DriftConfig
    snapshots: dict[str, Snapshot] = field(repr=False, default_factory=dict)
    # tabular models: per variant, quality on the records whose labels came back
    # (``monitoring.tabular_quality``): ``labels`` and accuracy, f1, ... or mae, rmse, r2
    labelled: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One line for logs and the retraining DAG's conf."""
        return "; ".join(self.reasons) if self.reasons else "no drift"

    def summary(self) -> dict[str, Any]:
        """JSON-ready result (no snapshots): for XCom, the report folder and MLflow."""
        return {
            "detected": self.detected,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "drift_share": self.drift_share,
            "column_scores": dict(self.column_scores),
            "drifted_columns": list(self.drifted_columns),
            "prediction_drift": self.prediction_drift,
            "quality": {v: asdict(q) for v, q in self.quality.items()},
            "champion_val_mae": self.champion_val_mae,
            "notes": list(self.notes),
            "labelled": {v: dict(m) for v, m in self.labelled.items()},
            "config": self.config.as_dict(),
            "reports": sorted(self.snapshots),
        }


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    *,
    champion_val_mae: float | None = None,
    config: DriftConfig | None = None,
    columns: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    timestamp: datetime | None = None,
) -> DriftResult:
    """Run the Evidently reports and decide whether the champion has drifted.

    ``columns`` defaults to ``y`` plus every numeric non-key column of the reference; all must
    be in ``current``. Columns that are not numeric in the reference are categorical (they need
    a method defined on categories, e.g. ``jensenshannon``). ``champion_val_mae`` (the
    registered run's ``val_mae``) enables the error rule. ``metadata`` (e.g. model name and
    version) and ``timestamp`` go on every snapshot.
    """
    config = config or DriftConfig()
    cols = _drift_columns(reference, current, columns)
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(reference[c])]
    categorical = [c for c in cols if c not in numeric]  # tabular features (jensenshannon)
    reference = _recent(reference, config.reference_rows)
    report_args = {"metadata": dict(metadata or {}), "timestamp": timestamp}
    snapshots: dict[str, Snapshot] = {}

    snapshots["data_drift"] = Report(
        [
            DataDriftPreset(
                columns=cols,
                method=config.method,
                threshold=config.column_threshold,
                drift_share=config.drift_share,
            )
        ],
        tags=["data_drift"],
    ).run(
        _dataset(current[cols], numerical=numeric, categorical_columns=categorical),
        _dataset(reference[cols], numerical=numeric, categorical_columns=categorical),
        **report_args,
    )
    scores = _value_drift_scores(snapshots["data_drift"])
    drifted = [c for c in cols if scores[c] >= config.column_threshold]
    share = len(drifted) / len(cols)

    prediction_drift = None
    quality: dict[str, VariantQuality] = {}
    notes: list[str] = []
    if predictions is not None and len(predictions) and TARGET in reference.columns:
        _require(
            predictions, ["yhat", "yhat_lower", "yhat_upper"] if TARGET in predictions else ["yhat"]
        )
        snapshots["prediction_drift"] = Report(
            [
                ValueDrift(
                    column=PREDICTION, method=config.method, threshold=config.column_threshold
                )
            ],
            tags=["prediction_drift"],
        ).run(
            _dataset(pd.DataFrame({PREDICTION: predictions["yhat"].to_numpy(float)}), [PREDICTION]),
            _dataset(pd.DataFrame({PREDICTION: reference[TARGET].to_numpy(float)}), [PREDICTION]),
            **report_args,
        )
        prediction_drift = _value_drift_scores(snapshots["prediction_drift"])[PREDICTION]
        for variant, steps in _steps_with_actuals(predictions).items():
            quality[variant] = VariantQuality(
                n_actuals=len(steps),
                mae=float(np.mean(np.abs(steps["target"] - steps[PREDICTION]))),
                coverage=float(steps["in_interval"].mean()),
            )
            if len(steps) >= config.min_actuals:
                try:
                    snapshots[f"quality_{variant}"] = _quality_report(steps, variant, report_args)
                except ValueError as exc:  # Evidently's plots reject degenerate (constant) errors
                    notes.append(f"quality report of {variant} not rendered: {exc}")

    reasons, decision_notes = _decide(config, share, drifted, scores, quality, champion_val_mae)
    return DriftResult(
        detected=bool(reasons),
        reasons=reasons,
        drift_share=share,
        column_scores=scores,
        drifted_columns=drifted,
        prediction_drift=prediction_drift,
        quality=quality,
        champion_val_mae=champion_val_mae,
        notes=notes + decision_notes,
        config=config,
        snapshots=snapshots,
    )


def _decide(
    config: DriftConfig,
    share: float,
    drifted: list[str],
    scores: dict[str, float],
    quality: dict[str, VariantQuality],
    champion_val_mae: float | None,
) -> tuple[list[str], list[str]]:
    reasons: list[str] = []
    notes: list[str] = []
    if drifted and share >= config.drift_share:
        named = ", ".join(f"{c} ({scores[c]:.2f})" for c in drifted)
        reasons.append(
            f"data drift in {len(drifted)}/{len(scores)} columns ({share:.0%} >= "
            f"{config.drift_share:.0%}, {config.method} >= {config.column_threshold:g}): {named}"
        )
    judged = config.champion_variant if config.champion_variant in quality else None
    if judged is None and len(quality) == 1:
        judged = next(iter(quality))
    q = quality.get(judged) if judged is not None else None
    if q is None:
        notes.append("coverage and error rules skipped: no actuals for the champion yet")
        return reasons, notes
    if q.n_actuals < config.min_actuals:
        notes.append(
            f"coverage and error rules skipped: {q.n_actuals} actuals < {config.min_actuals}"
        )
        return reasons, notes
    low, high = config.coverage_band
    if not np.isnan(q.coverage) and not low <= q.coverage <= high:
        reasons.append(
            f"interval coverage {q.coverage:.1%} outside [{low:.0%}, {high:.0%}] "
            f"on {q.n_actuals} actuals ({judged})"
        )
    if champion_val_mae is None or not math.isfinite(champion_val_mae):
        notes.append("error rule skipped: no champion validation MAE")
    elif q.mae > champion_val_mae * (1 + config.error_margin):
        reasons.append(
            f"live MAE {q.mae:.4g} above validation MAE {champion_val_mae:.4g} by more than "
            f"{config.error_margin:.0%} on {q.n_actuals} actuals ({judged})"
        )
    return reasons, notes


def _drift_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None
) -> list[str]:
    if columns is None:
        columns = [
            c
            for c in reference.columns
            if c not in KEY_COLUMNS and pd.api.types.is_numeric_dtype(reference[c])
        ]
        columns = sorted(columns, key=lambda c: c != TARGET)
    cols = list(columns)
    missing = [c for c in cols if c not in reference.columns or c not in current.columns]
    if not cols or missing:
        raise ValueError(
            f"drift columns missing from reference or current: {missing or 'no columns'} "
            f"(reference has {list(reference.columns)}, current has {list(current.columns)})"
        )
    for name, frame in (("reference", reference), ("current", current)):
        if frame[cols].dropna(how="all").empty:
            raise ValueError(f"{name} has no values in the drift columns {cols}")
    return cols


def _require(predictions: pd.DataFrame, needed: list[str]) -> None:
    missing = [c for c in needed if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing} (have {list(predictions.columns)})")


def _recent(reference: pd.DataFrame, rows: int | None) -> pd.DataFrame:
    """The last ``rows`` rows of each series (by ``ds`` when present)."""
    if rows is None or len(reference) <= rows:
        return reference
    ordered = reference.sort_values("ds", kind="stable") if "ds" in reference else reference
    if "unique_id" in ordered:
        return ordered.groupby("unique_id", sort=False).tail(rows)
    return ordered.tail(rows)


def _dataset(frame: pd.DataFrame, numerical: list[str], **definition: Any) -> Dataset:
    return Dataset.from_pandas(
        frame.reset_index(drop=True),
        data_definition=DataDefinition(numerical_columns=numerical, **definition),
    )


def _value_drift_scores(snapshot: Snapshot) -> dict[str, float]:
    """Column -> drift score from the ``ValueDrift`` results of a snapshot."""
    scores = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    return scores


def _steps_with_actuals(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per variant: ``target``, ``prediction`` and ``in_interval`` of the steps with actuals."""
    if TARGET not in predictions:
        return {}
    known = predictions[np.isfinite(predictions[TARGET].astype(float))]
    known = known[np.isfinite(known["yhat"].astype(float))]
    variants = (
        known["variant"].astype(str)
        if "variant" in known
        else pd.Series(DEFAULT_VARIANT, index=known.index)
    )
    out = {}
    for variant, rows in known.groupby(variants, sort=True):
        y = rows[TARGET].to_numpy(float)
        inside = (rows["yhat_lower"].to_numpy(float) <= y) & (
            y <= rows["yhat_upper"].to_numpy(float)
        )
        out[str(variant)] = pd.DataFrame(
            {"target": y, PREDICTION: rows["yhat"].to_numpy(float), "in_interval": inside * 1.0}
        )
    return out


def _quality_report(steps: pd.DataFrame, variant: str, report_args: dict[str, Any]) -> Snapshot:
    regression = [Regression(target="target", prediction=PREDICTION)]
    return Report(
        [RegressionQuality(), MeanValue(column="in_interval")],
        tags=["quality", variant],
    ).run(
        _dataset(steps, ["target", PREDICTION, "in_interval"], regression=regression),
        None,
        **report_args,
    )
