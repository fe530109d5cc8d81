"""The training pipeline as stage functions: URLs and small dicts in, URLs and dicts out.

Airflow tasks (``dags/forecast_training.py``) and ``tidemill train`` call the same functions,
so the pipeline runs with or without Airflow. Every stage writes under its run's URL in the
artifact store (``<store>/runs/<run_key>/``; the store is the home by default, see
``pipelines.settings``) and returns JSON-serialisable values (XCom-friendly) that name what it
wrote by URL, so each stage may run in its own process or pod with its own filesystem.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipelines import artifact_store, evaluation, registry, tuning
from pipelines.config import ExperimentConfig, load_config, parse_config
from pipelines.data.ingest import load_raw
from pipelines.data.snapshot import read_snapshot, write_snapshot
from pipelines.data.split import min_rows_required, split_rows
from pipelines.data.validate import DataValidationError, validate
from pipelines.home import TidemillHome
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor
from pipelines.settings import Settings

log = logging.getLogger(__name__)

SEASON_OF_FREQ = {"h": 24, "H": 24, "D": 7, "15min": 96, "30min": 48, "min": 60}


def _step(msg: str) -> None:
    """One progress line (shows in the terminal and in Airflow task logs)."""
    print(f"[tidemill] {msg}", flush=True)
    log.info(msg)


def season_of(cfg: ExperimentConfig) -> int:
    """Seasonal period used for MASE (and the seasonal-naive default)."""
    return SEASON_OF_FREQ.get(cfg.data.freq, 1)


def run_config(url: str) -> ExperimentConfig:
    """The effective config that a run's ingest wrote to the artifact store."""
    return parse_config(yaml.safe_load(artifact_store.read_text(url)), origin=url)


def min_history(cfg: ExperimentConfig) -> int:
    """The most history any configured model needs (fixed params and search-space maxima)."""
    need = 1
    for algo, acfg in cfg.algorithms.items():
        params = dict(acfg.params)
        for key in ("lookback", "season", "fit_window"):
            space = acfg.search_space.get(key)
            if space is not None and space.high is not None:
                params[key] = int(space.high)
        need = max(need, build_model(algo, cfg.horizon, **params).min_history)
    return need


# ----- stage 1: ingest + validate + snapshot ---------------------------------------------------
def ingest(
    config_path: str | Path,
    run_dir: str | Path,
    algorithms: list[str] | None = None,
    n_trials: int | None = None,
    horizon: int | None = None,
) -> dict[str, Any]:
    """Validate the source and write the snapshot and the effective config of this run.

    Nothing is written when validation fails.
    """
    cfg = load_config(config_path).with_overrides(algorithms, n_trials, horizon)
    _step(f"ingest: reading {cfg.data.source.kind} source for experiment {cfg.name}")
    raw = load_raw(cfg.data)
    need = min_rows_required(cfg, min_history(cfg))
    df = validate(raw, cfg.data, need, cfg.preprocess.max_missing_fraction)
    if df["unique_id"].nunique() != 1:
        raise DataValidationError(
            f"column unique_id: training takes one series, found {df['unique_id'].nunique()}"
        )
    run_url = str(run_dir)
    snap = write_snapshot(df, artifact_store.join(run_url, "ingest"))
    effective = artifact_store.write_text(
        artifact_store.join(run_url, "config.yaml"),
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
    )
    _step(f"ingest: {snap.rows} rows validated, snapshot {snap.url} (sha256 {snap.sha256})")
    return {
        "config": effective,
        "snapshot": snap.url,
        "sha256": snap.sha256,
        "rows": snap.rows,
    }


# ----- stage 2: preprocess ----------------------------------------------------------------------
def preprocess(ingested: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Split, fit the preprocessor on training rows only, write the prepared series."""
    cfg = run_config(ingested["config"])
    df = read_snapshot(ingested["snapshot"], ingested["sha256"])
    split = split_rows(len(df), cfg.split, horizon=cfg.horizon)
    pre = Preprocessor(cfg.preprocess).fit(df.iloc[split.train])
    out = pre.transform(df)
    prepared = pd.DataFrame(
        {
            "ds": df["ds"].to_numpy(),
            "y": df["y"].to_numpy(float),
            "y_scaled": out["y"].to_numpy(float),
        }
    )
    prepared["split"] = "unused"
    for name in ("train", "val", "test"):
        prepared.iloc[getattr(split, name), prepared.columns.get_loc("split")] = name
    stage = artifact_store.join(str(run_dir), "preprocess")
    prepared_url = artifact_store.write_parquet(
        prepared, artifact_store.join(stage, "prepared.parquet")
    )
    pre_url = artifact_store.write_text(
        artifact_store.join(stage, "preprocessor.json"), json.dumps(pre.to_dict(), indent=2)
    )
    counts = prepared["split"].value_counts().to_dict()
    _step(
        f"preprocess: train {counts.get('train', 0)}, val {counts.get('val', 0)}, "
        f"test {counts.get('test', 0)} rows; {cfg.preprocess.scaler} scaler fitted on train"
    )
    return {
        **ingested,
        "prepared": prepared_url,
        "preprocessor": pre_url,
        "algorithms": sorted(cfg.algorithms),
    }


class _Prepared:
    """The prepared series with its split as index ranges."""

    def __init__(self, url: str) -> None:
        df = artifact_store.read_parquet(url)
        self.ds = df["ds"].to_numpy("datetime64[ns]")
        self.y_raw = df["y"].to_numpy(float)
        self.y = df["y_scaled"].to_numpy(float)
        split = df["split"].to_numpy()
        self.train = np.flatnonzero(split == "train")
        self.val = np.flatnonzero(split == "val")
        self.test = np.flatnonzero(split == "test")

    def origins(self, rows: np.ndarray, horizon: int) -> np.ndarray:
        """Stride-1 forecast origins whose whole horizon lies inside ``rows``."""
        return np.arange(rows[0], rows[-1] - horizon + 2)


# ----- stage 3: tune ---------------------------------------------------------------------------
def tune(prepared: dict[str, Any], algorithm: str, home: TidemillHome) -> dict[str, Any]:
    """Optuna study for one algorithm on the training rows (rolling-origin CV)."""
    cfg = run_config(prepared["config"])
    data = _Prepared(prepared["prepared"])
    y_train = data.y[data.train]
    ds_train = data.ds[data.train]
    need = min_history(cfg)
    _step(f"tune {algorithm}: {cfg.tuning.n_trials} trials, {cfg.tuning.cv_folds} folds")
    started = time.perf_counter()
    result = tuning.tune(
        algorithm,
        cfg.algorithms[algorithm],
        y_train,
        ds_train,
        cfg.horizon,
        cfg.tuning,
        storage=Settings.resolve(home, cfg).optuna_storage_url,
        study_name=f"{cfg.name}-{algorithm}-h{cfg.horizon}",
        mase_denominator=evaluation.mase_scale(y_train, season_of(cfg)),
        min_train=need + cfg.horizon,
    )
    _step(
        f"tune {algorithm}: best params {result.best_params} ({time.perf_counter() - started:.1f}s)"
    )
    return {**result.to_dict(), "seconds": time.perf_counter() - started}


# ----- stage 4: train + evaluate one candidate -------------------------------------------------
def train(
    prepared: dict[str, Any],
    tuned: dict[str, Any],
    run_dir: str | Path,
    home: TidemillHome,
    pipeline_run: str,
) -> dict[str, Any]:
    """Fit the tuned model on train, calibrate intervals on val, evaluate on val and test,
    and log everything (params, metrics, plots, model) as one MLflow run."""
    import mlflow

    cfg = run_config(prepared["config"])
    algorithm = tuned["algorithm"]
    data = _Prepared(prepared["prepared"])
    pre = Preprocessor.from_dict(json.loads(artifact_store.read_text(prepared["preprocessor"])))
    train_start, train_end = data.train[0], data.train[-1] + 1
    started = time.perf_counter()
    _step(f"train {algorithm}: fitting on {len(data.train)} rows with {tuned['best_params']}")
    model = build_model(
        algorithm,
        cfg.horizon,
        level=cfg.level,
        freq=cfg.data.freq,
        seed=cfg.tuning.seed,
        **tuned["best_params"],
    )
    model.fit(data.y[train_start:train_end], data.ds[train_start:train_end])
    fit_s = time.perf_counter() - started
    val_origins = data.origins(data.val, cfg.horizon)
    model.calibrate(data.y, val_origins, data.ds)
    mase_den = evaluation.mase_scale(data.y_raw[train_start:train_end], season_of(cfg))
    results = {}
    forecasts = {}
    for part, rows in (("val", data.val), ("test", data.test)):
        origins = data.origins(rows, cfg.horizon)
        point = model.forecast_origins(data.y, origins, data.ds)
        # interval half-widths per step: conformal from validation, or ARIMA's native ones
        lower = point - model.interval_halfwidth
        upper = point + model.interval_halfwidth
        inv = pre.inverse_transform_target
        actual = evaluation.actual_windows(data.y_raw, origins, cfg.horizon)
        ev = evaluation.evaluate(actual, inv(point), inv(lower), inv(upper), mase_den)
        scaled = evaluation.actual_windows(data.y, origins, cfg.horizon)
        ev.overall["mse_scaled"] = float(evaluation.mse(scaled, point))
        ev.overall["mae_scaled"] = float(evaluation.mae(scaled, point))
        results[part] = ev
        forecasts[part] = (origins, inv(point), inv(lower), inv(upper))
    eval_s = time.perf_counter() - started - fit_s
    _step(
        f"train {algorithm}: val {cfg.tuning.metric} "
        f"{results['val'].overall[cfg.tuning.metric]:.4f}, test MAE "
        f"{results['test'].overall['mae']:.4f}, coverage "
        f"{results['test'].overall.get('coverage', float('nan')):.2f} "
        f"(fit {fit_s:.1f}s, eval {eval_s:.1f}s)"
    )

    from pipelines.bundle import ForecastBundle

    scratch = tempfile.TemporaryDirectory(prefix=f"tidemill-{algorithm}-")
    cand_dir = Path(scratch.name)
    bundle_dir = cand_dir / "bundle"
    meta = {
        "series_id": cfg.data.series_id,
        "target": cfg.data.target_column,
        "experiment": cfg.name,
        "snapshot_sha256": prepared["sha256"],
        "trained_until": str(data.ds[train_end - 1]),
    }
    ForecastBundle(pre, model, meta).save(bundle_dir)

    registry.configure(cfg, home)
    with mlflow.start_run(
        run_name=f"{algorithm}",
        tags=_lineage_tags(prepared, pipeline_run) | {"tidemill.algorithm": algorithm},
    ) as run:
        mlflow.log_params(
            {
                "algorithm": algorithm,
                "horizon": cfg.horizon,
                "level": cfg.level,
                **{f"hp.{k}": v for k, v in tuned["best_params"].items()},
            }
        )
        for part, ev in results.items():
            mlflow.log_metrics({f"{part}_{k}": v for k, v in ev.overall.items() if np.isfinite(v)})
            for metric, curve in ev.per_step.items():
                for step, value in enumerate(curve, start=1):
                    if np.isfinite(value):
                        mlflow.log_metric(f"{part}_{metric}_by_step", value, step=step)
        mlflow.log_metrics(
            {
                "fit_seconds": fit_s,
                "eval_seconds": eval_s,
                "tune_seconds": float(tuned.get("seconds", 0.0)),
                "test_mape_zero_actuals_skipped": results["test"].mape_zero_actuals_skipped,
            }
        )
        if tuned.get("best_value") is not None:
            mlflow.log_metric("cv_best_value", tuned["best_value"])
        plots = cand_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        origins, point, lower, upper = forecasts["test"]
        evaluation.plot_forecast(
            data.ds,
            data.y_raw,
            int(origins[-1]),
            point[-1],
            lower[-1],
            upper[-1],
            f"{algorithm}: last test forecast",
            plots / "forecast_vs_actual.png",
        )
        evaluation.plot_per_step(
            results["test"].per_step,
            f"{algorithm}: test metrics by step",
            plots / "metrics_by_step.png",
        )
        if tuned.get("study_name"):
            tuning.history_plot(
                tuned["storage"], tuned["study_name"], plots / "optuna_history.html"
            )
        mlflow.log_artifacts(str(plots), artifact_path="plots")
        (cand_dir / "evaluation.json").write_text(
            json.dumps(
                {p: {"overall": e.overall, "per_step": e.per_step} for p, e in results.items()}
            )
        )
        mlflow.log_artifact(str(cand_dir / "evaluation.json"))
        example = pd.DataFrame(
            {
                "unique_id": cfg.data.series_id,
                "ds": data.ds[train_end - model.min_history : train_end],
                "y": data.y_raw[train_end - model.min_history : train_end],
            }
        )
        model_uri = registry.log_bundle_model(bundle_dir, algorithm, example, cfg.horizon)
    with scratch:  # bundle, plots and evaluation also kept in the store, beside the run's data
        stored = artifact_store.put_dir(
            cand_dir, artifact_store.join(str(run_dir), "candidates", algorithm)
        )
    return {
        "algorithm": algorithm,
        "candidate": stored,
        "run_id": run.info.run_id,
        "model_uri": model_uri,
        "val_metric": results["val"].overall[cfg.tuning.metric],
        "metric": cfg.tuning.metric,
        "val": results["val"].overall,
        "test": results["test"].overall,
    }


# ----- stage 5: select + register --------------------------------------------------------------
def select(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the lowest validation error (the metric of the config)."""
    if not candidates:
        raise ValueError("no candidate models to select from")
    best = min(candidates, key=lambda c: c["val_metric"])
    ranking = ", ".join(
        f"{c['algorithm']}={c['val_metric']:.4f}"
        for c in sorted(candidates, key=lambda c: c["val_metric"])
    )
    _step(f"select: {best['algorithm']} has the best validation {best['metric']} ({ranking})")
    return best


def register(
    prepared: dict[str, Any], best: dict[str, Any], home: TidemillHome, pipeline_run: str
) -> dict[str, Any]:
    """Register the selected candidate; aliases challenger (+ champion if there is none)."""
    from mlflow import MlflowClient

    cfg = run_config(prepared["config"])
    registry.configure(cfg, home)
    uri = registry.tracking_uri(cfg, home)
    client = MlflowClient(uri, registry_uri=uri)
    name = cfg.mlflow.registered_model_name
    tags = _lineage_tags(prepared, pipeline_run) | {
        "tidemill.algorithm": best["algorithm"],
        f"tidemill.val_{best['metric']}": f"{best['val_metric']:.6g}",
    }
    mv, aliases = registry.register_version(name, best["model_uri"], best["run_id"], tags, client)
    _step(f"register: {name} version {mv.version} ({best['algorithm']}) aliases {aliases}")
    return {
        "name": name,
        "version": mv.version,
        "aliases": aliases,
        "algorithm": best["algorithm"],
        "run_id": best["run_id"],
        "tracking_uri": registry.tracking_uri(cfg, home),
    }


def _lineage_tags(prepared: dict[str, Any], pipeline_run: str) -> dict[str, str]:
    return {
        "tidemill.pipeline_run": pipeline_run,
        "tidemill.snapshot_url": prepared["snapshot"],
        "tidemill.snapshot_sha256": prepared["sha256"],
        "tidemill.config": prepared["config"],
    }


# ----- the whole pipeline without Airflow ------------------------------------------------------
def run_pipeline(
    config_path: str | Path,
    home: TidemillHome,
    run_key: str | None = None,
    algorithms: list[str] | None = None,
    n_trials: int | None = None,
    horizon: int | None = None,
) -> dict[str, Any]:
    """ingest → preprocess → tune and train each algorithm → select → register."""
    run_key = run_key or time.strftime("cli-%Y%m%dT%H%M%S")
    run_dir = Settings.resolve(home).store.url("runs", run_key)
    ingested = ingest(config_path, run_dir, algorithms, n_trials, horizon)
    prepared = preprocess(ingested, run_dir)
    candidates = []
    for algorithm in prepared["algorithms"]:
        tuned = tune(prepared, algorithm, home)
        candidates.append(train(prepared, tuned, run_dir, home, run_key))
    best = select(candidates)
    registered = register(prepared, best, home, run_key)
    return {"run_key": run_key, "candidates": candidates, "registered": registered}
