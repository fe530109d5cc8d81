"""Metrics, plots and feature importance of tabular models (scikit-learn's implementations).

Classification: labels encoded 0..k-1, probabilities ``(n, k)``; binary scores use class 1.
Anomaly: ``scores`` higher = more anomalous, ``flags`` 1 = anomaly, labels 1 = anomaly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from pipelines.evaluation import mape


def classification_metrics(y: np.ndarray, proba: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall, F1, ROC-AUC, PR-AUC, log-loss.

    Binary: precision/recall/F1 of class 1, ROC-AUC and PR-AUC (average precision) of its
    probability. More classes: macro averages, one-vs-rest AUCs."""
    k = proba.shape[1]
    binary = k == 2
    average = "binary" if binary else "macro"
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, average=average, zero_division=0),
        "recall": skm.recall_score(y, pred, average=average, zero_division=0),
        "f1": skm.f1_score(y, pred, average=average, zero_division=0),
        "log_loss": skm.log_loss(y, proba, labels=list(range(k))),
    }
    if len(np.unique(y)) > 1:
        if binary:
            out["roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
            out["pr_auc"] = skm.average_precision_score(y, proba[:, 1])
        else:
            onehot = np.eye(k)[y]
            out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", labels=list(range(k)))
            out["pr_auc"] = skm.average_precision_score(onehot, proba, average="macro")
    return {name: float(v) for name, v in out.items()}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R², RMSE, MAE, MAPE (percent, zero actuals skipped and counted), explained variance."""
    value, skipped = mape(np.asarray(y, float), np.asarray(pred, float))
    return {
        "r2": float(skm.r2_score(y, pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "mape": float(value),
        "mape_zero_actuals_skipped": float(skipped),
        "explained_variance": float(skm.explained_variance_score(y, pred)),
    }


def anomaly_metrics(
    y: np.ndarray | None, scores: np.ndarray, flags: np.ndarray
) -> dict[str, float]:
    """Share flagged; with labels also ROC-AUC and PR-AUC of the score and P/R/F1 of flags."""
    out = {"anomaly_rate": float(np.mean(flags))}
    if y is not None and len(np.unique(y)) > 1:
        out |= {
            "roc_auc": float(skm.roc_auc_score(y, scores)),
            "pr_auc": float(skm.average_precision_score(y, scores)),
            "precision": float(skm.precision_score(y, flags, zero_division=0)),
            "recall": float(skm.recall_score(y, flags, zero_division=0)),
            "f1": float(skm.f1_score(y, flags, zero_division=0)),
        }
    return out


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score cut with the highest F1 (positives: score >= cut)."""
    precision, recall, cuts = skm.precision_recall_curve(y, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(cuts[int(np.argmax(f1[:-1]))])


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5))


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_classification(
    y: np.ndarray, proba: np.ndarray, pred: np.ndarray, labels: list[str], title: str, out: Path
) -> list[Path]:
    """Confusion matrix, ROC and PR curves, calibration plot (binary: class 1)."""
    from sklearn.calibration import CalibrationDisplay

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = _figure()
    skm.ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(len(labels))), display_labels=labels, ax=ax, colorbar=False
    )
    ax.set_title(f"{title}: confusion matrix")
    paths.append(_save(fig, out / "confusion_matrix.png"))
    if proba.shape[1] == 2 and len(np.unique(y)) > 1:
        for name, display in (
            ("roc_curve", skm.RocCurveDisplay),
            ("pr_curve", skm.PrecisionRecallDisplay),
        ):
            fig, ax = _figure()
            display.from_predictions(y, proba[:, 1], ax=ax, name=title)
            ax.set_title(f"{title}: {name.replace('_', ' ')}")
            paths.append(_save(fig, out / f"{name}.png"))
        fig, ax = _figure()
        CalibrationDisplay.from_predictions(y, proba[:, 1], n_bins=10, strategy="quantile", ax=ax)
        ax.set_title(f"{title}: calibration")
        paths.append(_save(fig, out / "calibration.png"))
    return paths


def plot_regression(y: np.ndarray, pred: np.ndarray, title: str, out: Path) -> list[Path]:
    """Residuals vs predicted and predicted vs actual."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, name in (("residual_vs_predicted", "residuals"), ("actual_vs_predicted", "pred")):
        fig, ax = _figure()
        skm.PredictionErrorDisplay.from_predictions(y, pred, kind=kind, ax=ax)
        ax.set_title(f"{title}: {kind.replace('_', ' ')}")
        paths.append(_save(fig, out / f"{name}.png"))
    return paths


def plot_anomaly(
    scores: np.ndarray, y: np.ndarray | None, threshold: float, title: str, out: Path
) -> list[Path]:
    """Score histogram (by label when known) with the threshold; PR curve when labelled."""
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = _figure()
    groups = (
        [("all", scores)]
        if y is None
        else [("normal", scores[y == 0]), ("anomaly", scores[y == 1])]
    )
    for name, values in groups:
        ax.hist(values, bins=40, alpha=0.6, label=name, density=True)
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("anomaly score")
    ax.legend()
    ax.set_title(f"{title}: scores")
    paths = [_save(fig, out / "score_histogram.png")]
    if y is not None and len(np.unique(y)) > 1:
        fig, ax = _figure()
        skm.PrecisionRecallDisplay.from_predictions(y, scores, ax=ax, name=title)
        paths.append(_save(fig, out / "pr_curve.png"))
    return paths


def plot_loss_curves(curves: dict[str, list[float]], title: str, path: Path) -> Path:
    """Iteration-wise losses of a boosted model (train and held-out)."""
    fig, ax = _figure()
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel("boosting round")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title(f"{title}: loss by iteration")
    return _save(fig, path)


def permutation_importance(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, scoring: str, seed: int, repeats: int = 5
) -> pd.DataFrame:
    """Drop in score when each raw input column is shuffled (scikit-learn), highest first."""
    from sklearn.inspection import permutation_importance as permute

    result = permute(pipeline, X, y, scoring=scoring, n_repeats=repeats, random_state=seed)
    return pd.DataFrame(
        {
            "feature": list(X.columns),
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    ).sort_values("importance_mean", ascending=False, ignore_index=True)


def shap_importance(algorithm: str, pipeline: Any, X: pd.DataFrame, names: list[str]) -> Any:
    """Mean |SHAP value| per model input from the booster's own TreeSHAP (``pred_contrib``)
    for LightGBM and XGBoost; None for other algorithms."""
    if algorithm not in ("lightgbm", "xgboost"):
        return None
    Xt = pipeline.named_steps["preprocess"].transform(X)
    model = pipeline.named_steps["model"]
    if algorithm == "lightgbm":
        contrib = model.predict(Xt, pred_contrib=True)
    else:
        import xgboost as xgb

        contrib = model.get_booster().predict(xgb.DMatrix(Xt), pred_contribs=True)
    contrib = np.asarray(contrib)
    if contrib.ndim == 3:  # multi-class: (n, classes, features + 1)
        contrib = np.abs(contrib).mean(axis=1)
    values = np.abs(contrib[:, : len(names)]).mean(axis=0)
    return pd.DataFrame({"feature": names, "mean_abs_shap": values}).sort_values(
        "mean_abs_shap", ascending=False, ignore_index=True
    )


def plot_importance(table: pd.DataFrame, column: str, title: str, path: Path) -> Path:
    fig, ax = _figure()
    shown = table.head(20).iloc[::-1]
    ax.barh(shown["feature"], shown[column])
    ax.set_xlabel(column.replace("_", " "))
    ax.set_title(title)
    return _save(fig, path)
