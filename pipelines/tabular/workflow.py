"""The tabular training pipeline as stage functions (URLs and small dicts in and out).

``ingest`` → ``prepare`` → ``tune`` and ``train`` per algorithm → ``select`` → ``register``,
the shape of the forecasting pipeline (``pipelines.workflow``): the Airflow DAG
``tabular_training`` and ``tidemill train`` call the same functions. Every stage writes under
its run's URL in the artifact store (``<store>/runs/<run_key>/``, see ``pipelines.settings``)
and returns JSON-serialisable values naming what it wrote by URL.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipelines import artifact_store, registry
from pipelines.data.snapshot import read_snapshot, write_snapshot
from pipelines.home import TidemillHome
from pipelines.settings import Settings
from pipelines.tabular import evaluation, model_card, tuning
from pipelines.tabular.bundle import TabularBundle, predict_classes
from pipelines.tabular.config import TabularConfig, load_tabular_config, parse_tabular_config
from pipelines.tabular.data import (
    SPLIT_COLUMN,
    read_table,
    source_name,
    split_parts,
    validate_table,
)
from pipelines.tabular.preprocess import feature_names, fit_model
from pipelines.workflow import _lineage_tags, _step

SKLEARN_SCORING = {
    "classification": {"f1": "f1", "roc_auc": "roc_auc", "pr_auc": "average_precision",
                       "log_loss": "neg_log_loss", "accuracy": "accuracy",
                       "balanced_accuracy": "balanced_accuracy", "precision": "precision",
                       "recall": "recall"},
    "regression": {"r2": "r2", "rmse": "neg_root_mean_squared_error",
                   "mae": "neg_mean_absolute_error", "mape": "neg_mean_absolute_percentage_error",
                   "explained_variance": "explained_variance"},
}  # fmt: skip


PREPARED_TAG = "tidemill.prepared"  # a version's split rows (promotion tests on their test part)


def run_config(url: str) -> TabularConfig:
    """The effective config that a run's ingest wrote to the artifact store."""
    return parse_tabular_config(yaml.safe_load(artifact_store.read_text(url)), origin=url)


# ----- stage 1: ingest (read, validate, snapshot) ----------------------------------------------
def ingest(
    config_path: str | Path,
    run_dir: str | Path,
    algorithms: list[str] | None = None,
    n_trials: int | None = None,
) -> dict[str, Any]:
    """Validate the source; write the snapshot and the effective config (nothing on error)."""
    cfg = load_tabular_config(config_path).with_overrides(algorithms, n_trials)
    _step(f"ingest: reading {source_name(cfg.data)} for {cfg.task} experiment {cfg.name}")
    validated = validate_table(read_table(cfg.data), cfg)
    for column, why in validated.dropped.items():
        _step(f"ingest: dropped column {column!r}: {why}")
    run_url = str(run_dir)
    snap = write_snapshot(validated.frame, artifact_store.join(run_url, "ingest"))
    effective = artifact_store.write_text(
        artifact_store.join(run_url, "config.yaml"),
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
    )
    _step(
        f"ingest: {snap.rows} rows, {len(validated.numeric)} numeric and "
        f"{len(validated.categorical)} categorical features (sha256 {snap.sha256})"
    )
    return {
        "config": effective,
        "snapshot": snap.url,
        "sha256": snap.sha256,
        "rows": snap.rows,
        "source": source_name(cfg.data),
        "numeric": validated.numeric,
        "categorical": validated.categorical,
        "dropped": validated.dropped,
    }


# ----- stage 2: prepare (split, label classes) -------------------------------------------------
def prepare(ingested: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Split train/val/test (stratified or chronological) and record the label classes."""
    cfg = run_config(ingested["config"])
    frame = read_snapshot(ingested["snapshot"], ingested["sha256"])
    parts = split_parts(frame, cfg)
    prepared = artifact_store.write_parquet(
        frame.assign(**{SPLIT_COLUMN: parts}),
        artifact_store.join(str(run_dir), "prepare", "prepared.parquet"),
    )
    counts = {p: int((parts == p).sum()) for p in ("train", "val", "test")}
    classes = None
    class_counts = None
    if cfg.task != "regression" and cfg.labelled:
        labels = frame[cfg.data.target_column]
        classes = sorted(labels.unique().tolist())
        class_counts = {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}
    _step(
        f"prepare: train {counts['train']}, val {counts['val']}, test {counts['test']} rows"
        + (f"; classes {class_counts}" if class_counts else "")
    )
    return {
        **ingested,
        "prepared": prepared,
        "parts": counts,
        "classes": classes,
        "class_counts": class_counts,
        "algorithms": sorted(cfg.algorithms),
    }


class _Data:
    """The prepared frame: features, encoded labels and the three parts."""

    def __init__(self, prepared: dict[str, Any], cfg: TabularConfig) -> None:
        df = artifact_store.read_parquet(prepared["prepared"])
        self.numeric = prepared["numeric"]
        self.categorical = prepared["categorical"]
        self.X = df[self.numeric + self.categorical]
        self.y: np.ndarray | None = None
        if cfg.labelled:
            target = df[cfg.data.target_column]
            if prepared["classes"] is not None:
                index = {c: i for i, c in enumerate(prepared["classes"])}
                self.y = target.map(index).to_numpy(int)
            else:
                self.y = target.to_numpy(float)
        self.parts = {p: np.flatnonzero(df[SPLIT_COLUMN].to_numpy() == p) for p in
                      ("train", "val", "test")}  # fmt: skip

    def part(self, name: str) -> tuple[pd.DataFrame, np.ndarray | None]:
        rows = self.parts[name]
        return self.X.iloc[rows], None if self.y is None else self.y[rows]


# ----- stage 3: tune ---------------------------------------------------------------------------
def tune(prepared: dict[str, Any], algorithm: str, home: TidemillHome) -> dict[str, Any]:
    """Optuna study for one algorithm, cross-validated on the training rows."""
    cfg = run_config(prepared["config"])
    data = _Data(prepared, cfg)
    X, y = data.part("train")
    _step(
        f"tune {algorithm}: {cfg.tuning.method}, {cfg.tuning.n_trials} trials, "
        f"{cfg.cv.folds}-fold {cfg.cv.method} CV on {cfg.metric}"
    )
    started = time.perf_counter()
    result = tuning.tune(
        algorithm,
        cfg.algorithms[algorithm],
        X,
        y,
        data.numeric,
        data.categorical,
        cfg,
        storage=Settings.resolve(home, cfg).optuna_storage_url,
        study_name=f"{cfg.name}-{algorithm}-{prepared['sha256'][:12]}",
    )
    seconds = time.perf_counter() - started
    _step(f"tune {algorithm}: best params {result['best_params']} ({seconds:.1f}s)")
    return {**result, "seconds": seconds}


# ----- stage 4: train + evaluate one candidate -------------------------------------------------
def train(
    prepared: dict[str, Any],
    tuned: dict[str, Any],
    run_dir: str | Path,
    home: TidemillHome,
    pipeline_run: str,
) -> dict[str, Any]:
    """Fit on train (boosted models stop early on val), set the threshold on val, evaluate
    val and test, explain, write the model card and log it all as one MLflow run."""
    import mlflow

    cfg = run_config(prepared["config"])
    algorithm = tuned["algorithm"]
    data = _Data(prepared, cfg)
    X_train, y_train = data.part("train")
    X_val, y_val = data.part("val")
    started = time.perf_counter()
    _step(f"train {algorithm}: fitting on {len(X_train)} rows with {tuned['best_params']}")
    fitted = fit_model(
        algorithm,
        tuned["best_params"],
        X_train,
        None if cfg.task == "anomaly" else y_train,
        data.numeric,
        data.categorical,
        cfg,
        eval_set=(X_val, y_val) if algorithm in tuning.BOOSTED else None,
    )
    fit_s = time.perf_counter() - started
    pipe = fitted.pipeline
    threshold = _threshold(cfg, pipe, X_train, X_val, y_val)
    results = {p: _evaluate(cfg, pipe, *data.part(p), threshold) for p in ("val", "test")}
    companion = _companion(cfg, prepared, data) if cfg.task == "anomaly" else None
    eval_s = time.perf_counter() - started - fit_s
    metric = cfg.metric
    shown = ", ".join(f"{k} {v:.4f}" for k, v in results["test"].items() if k in _SHOWN)
    _step(
        f"train {algorithm}: val {metric} {results['val'].get(metric, float('nan')):.4f}; "
        f"test {shown} (fit {fit_s:.1f}s, eval {eval_s:.1f}s)"
    )

    scratch = tempfile.TemporaryDirectory(prefix=f"tidemill-{algorithm}-")
    cand_dir = Path(scratch.name)
    plots = cand_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    X_test, y_test = data.part("test")
    _plots(cfg, algorithm, pipe, X_test, y_test, threshold, fitted.curves, plots)
    importance = _importance(cfg, algorithm, pipe, X_test, y_test, cand_dir)

    meta = {
        "task": cfg.task,
        "algorithm": algorithm,
        "target": cfg.data.target_column,
        "numeric": data.numeric,
        "categorical": data.categorical,
        "categories": {c: sorted(X_train[c].dropna().unique().tolist()) for c in data.categorical},
        "classes": prepared["classes"] if cfg.task == "classification" else None,
        "threshold": threshold,
        "model_features": feature_names(pipe),
        "experiment": cfg.name,
        "snapshot_sha256": prepared["sha256"],
    }
    bundle_dir = TabularBundle(pipe, meta).save(cand_dir / "bundle")
    candidate = {
        "algorithm": algorithm,
        "params": tuned["best_params"],
        "threshold": threshold,
        "val": results["val"],
        "test": results["test"],
    }
    card = model_card.render(cfg, candidate, {**prepared, "pipeline_run": pipeline_run})
    (cand_dir / "model_card.md").write_text(card)

    registry.configure(cfg, home)
    with mlflow.start_run(
        run_name=algorithm,
        tags=_lineage_tags(prepared, pipeline_run)
        | {"tidemill.algorithm": algorithm, "tidemill.task": cfg.task},
    ) as run:
        mlflow.log_params(
            {
                "algorithm": algorithm,
                "task": cfg.task,
                "tuning_method": cfg.tuning.method,
                "imbalance": cfg.imbalance.method,
                "feature_selection": cfg.feature_selection.method,
                **{f"hp.{k}": v for k, v in tuned["best_params"].items()},
            }
        )
        for part, values in results.items():
            mlflow.log_metrics({f"{part}_{k}": v for k, v in values.items() if np.isfinite(v)})
        for part, values in (companion or {}).items():
            mlflow.log_metrics({f"companion_{part}_{k}": v for k, v in values.items()})
        mlflow.log_metrics(
            {
                "fit_seconds": fit_s,
                "eval_seconds": eval_s,
                "tune_seconds": float(tuned.get("seconds", 0.0)),
                "train_rows": fitted.train_rows,
            }
        )
        if threshold is not None:
            mlflow.log_metric("threshold", threshold)
        if tuned.get("best_value") is not None:
            mlflow.log_metric("cv_best_value", tuned["best_value"])
        registry.log_curves({f"loss_{name}": curve for name, curve in fitted.curves.items()})
        if tuned.get("study_name"):
            from pipelines.tuning import history_plot

            history_plot(tuned["storage"], tuned["study_name"], plots / "optuna_history.html")
        mlflow.log_artifacts(str(plots), artifact_path="plots")
        for path in importance:
            mlflow.log_artifact(str(path), artifact_path="importance")
        evaluation_path = cand_dir / "evaluation.json"
        evaluation_path.write_text(json.dumps({**results, "companion": companion}, indent=2))
        mlflow.log_artifact(str(evaluation_path))
        mlflow.log_artifact(str(cand_dir / "model_card.md"))
        model_uri = _log_model(bundle_dir, algorithm, TabularBundle(pipe, meta), X_val)
    with scratch:  # bundle, plots, importance and the model card kept in the store too
        stored = artifact_store.put_dir(
            cand_dir, artifact_store.join(str(run_dir), "candidates", algorithm)
        )
    return {
        "algorithm": algorithm,
        "run_id": run.info.run_id,
        "model_uri": model_uri,
        "metric": metric,
        "direction": cfg.direction,
        "val_metric": results["val"].get(metric),
        "val": results["val"],
        "test": results["test"],
        "candidate": stored,
        "model_card": artifact_store.join(stored, "model_card.md"),
        "seconds": fit_s + eval_s + float(tuned.get("seconds", 0.0)),
    }


_SHOWN = ("f1", "pr_auc", "roc_auc", "accuracy", "r2", "rmse", "anomaly_rate")


def _threshold(
    cfg: TabularConfig, pipe: Any, X_train: pd.DataFrame, X_val: pd.DataFrame, y_val: Any
) -> float | None:
    """Binary classification: 0.5 or the best validation F1; anomaly: the contamination
    quantile of training scores or the best validation F1; otherwise None."""
    if cfg.task == "anomaly":
        if cfg.anomaly.threshold == "best_f1":
            return evaluation.best_f1_threshold(y_val, -pipe.score_samples(X_val))
        return float(np.quantile(-pipe.score_samples(X_train), 1 - cfg.anomaly.contamination))
    if cfg.task != "classification" or len(pipe.classes_) != 2:
        return None
    if cfg.decision_threshold == "best_f1":
        return evaluation.best_f1_threshold(y_val, pipe.predict_proba(X_val)[:, 1])
    return float(cfg.decision_threshold)


def _evaluate(
    cfg: TabularConfig, pipe: Any, X: pd.DataFrame, y: Any, threshold: float | None
) -> dict[str, float]:
    if cfg.task == "classification":
        proba = pipe.predict_proba(X)
        return evaluation.classification_metrics(y, proba, predict_classes(proba, threshold))
    if cfg.task == "regression":
        return evaluation.regression_metrics(y, pipe.predict(X))
    scores = -pipe.score_samples(X)
    return evaluation.anomaly_metrics(y, scores, (scores >= threshold).astype(int))


def _companion(cfg: TabularConfig, prepared: dict[str, Any], data: _Data) -> Any:
    """The supervised classifier beside a labelled anomaly detector: its val/test metrics."""
    name = cfg.anomaly.companion
    if not name or data.y is None:
        return None
    X_train, y_train = data.part("train")
    X_val, y_val = data.part("val")
    boosted = name in tuning.BOOSTED
    fitted = fit_model(
        name, {}, X_train, y_train, data.numeric, data.categorical, cfg,
        task="classification", eval_set=(X_val, y_val) if boosted else None,
    )  # fmt: skip
    threshold = evaluation.best_f1_threshold(y_val, fitted.pipeline.predict_proba(X_val)[:, 1])
    out = {}
    for part in ("val", "test"):
        X, y = data.part(part)
        proba = fitted.pipeline.predict_proba(X)
        m = evaluation.classification_metrics(y, proba, predict_classes(proba, threshold))
        out[part] = {k: m[k] for k in ("pr_auc", "roc_auc", "f1", "precision", "recall")}
    _step(f"train: supervised companion {name}: test {out['test']}")
    return out


def _plots(
    cfg: TabularConfig,
    algorithm: str,
    pipe: Any,
    X: pd.DataFrame,
    y: Any,
    threshold: float | None,
    curves: dict[str, list[float]],
    out: Path,
) -> None:
    title = f"{algorithm} (test)"
    if cfg.task == "classification":
        proba = pipe.predict_proba(X)
        labels = [str(c) for c in pipe.classes_]
        evaluation.plot_classification(
            y, proba, predict_classes(proba, threshold), labels, title, out
        )
    elif cfg.task == "regression":
        evaluation.plot_regression(y, pipe.predict(X), title, out)
    else:
        evaluation.plot_anomaly(-pipe.score_samples(X), y, threshold, title, out)
    if curves:
        evaluation.plot_loss_curves(curves, algorithm, out / "loss_curves.png")


def _importance(
    cfg: TabularConfig, algorithm: str, pipe: Any, X: pd.DataFrame, y: Any, out: Path
) -> list[Path]:
    """Permutation importance on the test rows (every supervised model) and TreeSHAP
    summaries (LightGBM, XGBoost, from the boosters themselves)."""
    paths: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    if cfg.task in SKLEARN_SCORING:
        scoring = SKLEARN_SCORING[cfg.task][cfg.metric]
        if cfg.task == "classification" and len(pipe.classes_) > 2 and scoring in (
            "f1", "precision", "recall", "roc_auc", "average_precision"
        ):  # fmt: skip
            scoring = "balanced_accuracy"
        table = evaluation.permutation_importance(pipe, X, y, scoring, cfg.tuning.seed)
        table.to_csv(out / "permutation_importance.csv", index=False)
        paths += [
            out / "permutation_importance.csv",
            evaluation.plot_importance(
                table, "importance_mean", f"{algorithm}: permutation importance ({scoring})",
                out / "permutation_importance.png",
            ),
        ]  # fmt: skip
    shap = evaluation.shap_importance(algorithm, pipe, X, feature_names(pipe))
    if shap is not None:
        shap.to_csv(out / "shap_importance.csv", index=False)
        paths += [
            out / "shap_importance.csv",
            evaluation.plot_importance(
                shap, "mean_abs_shap", f"{algorithm}: mean |SHAP| (TreeSHAP)",
                out / "shap_summary.png",
            ),
        ]  # fmt: skip
    return paths


def _log_model(bundle_dir: Path, algorithm: str, bundle: TabularBundle, X_val: pd.DataFrame) -> str:
    """Log the bundle as pyfunc ``model`` with a feature-record signature; return its URI.

    The input columns are the features with type ``any``: MLflow would refuse integers for
    a ``double`` column; the bundle types each value itself and names the feature and
    record it cannot use."""
    import warnings

    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from pipelines.tabular import mlflow_entry
    from pipelines.tabular.pyfunc_model import pip_requirements

    example = X_val.head(5).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        inferred = infer_signature(example, bundle.predict(example))
        inputs = Schema([ColSpec(AnyType(), name) for name in bundle.features])
        signature = ModelSignature(inputs, inferred.outputs)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=mlflow_entry.__file__,
            artifacts={"bundle": str(bundle_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(algorithm),
        )
    return info.model_uri


# ----- stage 5: select + register --------------------------------------------------------------
def select(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the best validation metric (direction from the metric)."""
    if not candidates:
        raise ValueError("no candidate models to select from")
    sign = -1.0 if candidates[0]["direction"] == "maximize" else 1.0
    ranked = sorted(candidates, key=lambda c: sign * c["val_metric"])
    ranking = ", ".join(f"{c['algorithm']}={c['val_metric']:.4f}" for c in ranked)
    _step(f"select: {ranked[0]['algorithm']} has the best validation {ranked[0]['metric']} "
          f"({ranking})")  # fmt: skip
    return ranked[0]


def register(
    prepared: dict[str, Any], best: dict[str, Any], home: TidemillHome, pipeline_run: str
) -> dict[str, Any]:
    """Register the selected candidate with its model card as the version description;
    aliases challenger (+ champion if there is none), all or nothing."""
    from mlflow import MlflowClient

    cfg = run_config(prepared["config"])
    registry.configure(cfg, home)
    uri = registry.tracking_uri(cfg, home)
    client = MlflowClient(uri, registry_uri=uri)
    name = cfg.mlflow.registered_model_name
    tags = _lineage_tags(prepared, pipeline_run) | {
        PREPARED_TAG: prepared["prepared"],
        "tidemill.algorithm": best["algorithm"],
        "tidemill.task": cfg.task,
        f"tidemill.val_{best['metric']}": f"{best['val_metric']:.6g}",
    }
    card = artifact_store.read_text(best["model_card"])
    mv, aliases = registry.register_version(
        name,
        best["model_uri"],
        best["run_id"],
        tags,
        client,
        description=card,
        model_description=f"Tidemill {cfg.task} model; aliases champion/challenger.",
    )
    _step(f"register: {name} version {mv.version} ({best['algorithm']}) aliases {aliases}")
    return {
        "name": name,
        "version": mv.version,
        "aliases": aliases,
        "algorithm": best["algorithm"],
        "run_id": best["run_id"],
        "task": cfg.task,
        "tracking_uri": uri,
    }


# ----- the whole pipeline without Airflow ------------------------------------------------------
def run_pipeline(
    config_path: str | Path,
    home: TidemillHome,
    run_key: str | None = None,
    algorithms: list[str] | None = None,
    n_trials: int | None = None,
) -> dict[str, Any]:
    """ingest → prepare → tune and train each algorithm → select → register."""
    run_key = run_key or time.strftime("cli-%Y%m%dT%H%M%S")
    run_dir = Settings.resolve(home).store.url("runs", run_key)
    started = time.perf_counter()
    prepared = prepare(ingest(config_path, run_dir, algorithms, n_trials), run_dir)
    candidates = [
        train(prepared, tune(prepared, algorithm, home), run_dir, home, run_key)
        for algorithm in prepared["algorithms"]
    ]
    registered = register(prepared, select(candidates), home, run_key)
    seconds = time.perf_counter() - started
    _step(f"done in {seconds:.0f}s")
    return {
        "run_key": run_key,
        "prepared": prepared,
        "candidates": candidates,
        "registered": registered,
        "seconds": seconds,
    }
