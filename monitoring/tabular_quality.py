"""Quality of a tabular model on the records whose labels came back.

Labels arrive through the control API's ``POST /feedback`` (request id + the record's
position in the request, ``serving.prediction_log.reader.record_labels``) and are joined to
the logged records by ``tabular_records`` (column ``label``). Per variant with at least
``min_labels`` labelled records, an Evidently report: ``ClassificationPreset`` for
classifiers (binary: the logged ``prediction_proba`` of the positive class cut at the model's
decision threshold, as serving does; more classes: the labels), ``RegressionPreset`` for
regressors; their headline numbers become
the check's ``labelled`` metrics (MLflow, Prometheus). With fewer labels it says so and
reports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from evidently import BinaryClassification, MulticlassClassification, Regression, Report
from evidently.core.report import Snapshot
from evidently.presets import ClassificationPreset, RegressionPreset

from monitoring.drift import _dataset

LABEL = "label"
# Evidently metric -> (our key, the part of its value that is the number)
NUMBERS = {
    "Accuracy": ("accuracy", None), "Precision": ("precision", None),
    "Recall": ("recall", None), "F1Score": ("f1", None), "RocAuc": ("roc_auc", None),
    "LogLoss": ("log_loss", None), "MAE": ("mae", "mean"), "RMSE": ("rmse", None),
    "R2Score": ("r2", None),
}  # fmt: skip


@dataclass
class LabelledQuality:
    """Reports (``quality_<variant>``), numbers per variant and notes of one check."""

    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def labelled_quality(
    task: str,
    records: pd.DataFrame,
    classes: list[Any] | None,
    min_labels: int,
    report_args: dict[str, Any],
    threshold: float | None = None,
) -> LabelledQuality:
    """Quality reports of the labelled ``records`` (``tabular_records``) per variant;
    ``classes`` and ``threshold`` (binary, default 0.5) are the model's (``bundle.meta``)."""
    out = LabelledQuality()
    if task not in ("classification", "regression"):
        out.notes.append(f"quality reports cover classification and regression, not {task}")
        return out
    labelled = records[records[LABEL].notna()] if LABEL in records else records.iloc[:0]
    if labelled.empty:
        out.notes.append("quality not reported: no labels have come back through /feedback")
        return out
    for variant, rows in labelled.groupby(labelled["variant"].astype(str), sort=True):
        if len(rows) < min_labels:
            out.notes.append(f"quality of {variant} not reported: {len(rows)} labelled "
                             f"records, at least {min_labels} needed")
            out.metrics[variant] = {"labels": float(len(rows))}
            continue
        frame, definition = (_classification(rows, classes or []) if task == "classification"
                             else _regression(rows))
        if len(frame) < len(rows):
            out.notes.append(f"{variant}: {len(rows) - len(frame)} label(s) not among the "
                             f"classes {classes} left out")
        preset = (ClassificationPreset(probas_threshold=threshold) if task == "classification"
                  else RegressionPreset())
        snapshot = Report([preset], tags=["quality", variant]).run(
            _dataset(frame, **definition), None, **report_args)
        out.snapshots[f"quality_{variant}"] = snapshot
        out.metrics[variant] = {"labels": float(len(frame)), **_numbers(snapshot)}
    return out


def _classification(rows: pd.DataFrame, classes: list[Any]) -> tuple[pd.DataFrame, dict]:
    """Labels as the model's classes (feedback carries numbers: 1.0 is class 1)."""
    by_value = {_as_number(c): c for c in classes}
    target = np.array([by_value.get(_as_number(v)) for v in rows[LABEL]], dtype=object)
    known = np.array([t is not None for t in target], dtype=bool)
    frame = pd.DataFrame({"target": target[known],
                          "prediction": rows["prediction"].astype(object).to_numpy()[known]})
    if len(classes) == 2:
        frame["prediction_proba"] = rows["prediction_proba"].to_numpy(float)[known]
        task = BinaryClassification(target="target", prediction_labels="prediction",
                                    prediction_probas="prediction_proba", pos_label=classes[1])
        numeric = ["prediction_proba"]
    else:
        task = MulticlassClassification(target="target", prediction_labels="prediction")
        numeric = []
    return frame, {"numerical": numeric, "categorical_columns": ["target", "prediction"],
                   "classification": [task]}


def _regression(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    frame = pd.DataFrame({"target": rows[LABEL].to_numpy(float),
                          "prediction": rows["prediction"].to_numpy(float)})
    return frame, {"numerical": ["target", "prediction"],
                   "regression": [Regression(target="target", prediction="prediction")]}


def _as_number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _numbers(snapshot: Snapshot) -> dict[str, float]:
    found = {}
    for metric in snapshot.dict()["metrics"]:
        kind = metric.get("config", {}).get("type", "").rsplit(":", 1)[-1]
        if kind in NUMBERS:
            key, part = NUMBERS[kind]
            value = metric["value"][part] if part else metric["value"]
            if value is not None and np.isfinite(float(value)):
                found[key] = float(value)
    return found
