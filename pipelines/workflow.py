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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipelines import artifact_store, engine, evaluation, naive2, panel, registry, tuning
from pipelines.config import ConfigError, ExperimentConfig, load_config, parse_config
from pipelines.data.ingest import load_raw
from pipelines.data.snapshot import read_snapshot, write_snapshot
from pipelines.data.split import min_rows_required, split_labels, split_problems
from pipelines.data.validate import validate_panel
from pipelines.exogenous import ExogSpec
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


def _largest_models(cfg: ExperimentConfig, algorithm: str | None = None) -> list[Any]:
    """Each configured model (or ``algorithm``) at its fixed params and search-space maxima."""
    models = []
    for algo, acfg in cfg.algorithms.items():
        if algorithm is not None and algo != algorithm:
            continue
        params = dict(acfg.params)
        for key in ("lookback", "season", "fit_window"):
            space = acfg.search_space.get(key)
            if space is not None and space.high is not None:
                params[key] = int(space.high)
        models.append(build_model(algo, cfg.horizon, **params))
    return models


def min_history(cfg: ExperimentConfig, algorithm: str | None = None) -> int:
    """The most history any configured model (or ``algorithm``) needs (fixed params and
    search-space maxima)."""
    return max([1, *(m.min_history for m in _largest_models(cfg, algorithm))])


def min_fit_rows(cfg: ExperimentConfig, algorithm: str) -> int:
    """The fewest rows ``algorithm`` fits on: its history plus one horizon, or more where the
    model asks for more (the LSTM wants ten training windows)."""
    return max(getattr(m, "min_fit_rows", m.min_history + cfg.horizon)
               for m in _largest_models(cfg, algorithm))


def history_needed(cfg: ExperimentConfig) -> int:
    """Training rows before the last window that every series needs: each model's history,
    plus the cross-validation folds (each ``horizon + 1`` rows) of the tuned ones."""
    folds = cfg.tuning.cv_folds * (cfg.horizon + 1) - 1
    return max(
        min_fit_rows(cfg, algo) - cfg.horizon + (folds if acfg.search_space else 0)
        for algo, acfg in cfg.algorithms.items()
    )


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
    _check_cross_fit(cfg)
    _step(f"ingest: reading {cfg.data.source.kind} source for experiment {cfg.name}")
    history = history_needed(cfg)
    need = min_rows_required(cfg, history)

    def series_problems(typed: pd.DataFrame) -> dict[str, str]:
        labels = split_labels(typed, cfg.split, cfg.data.freq)
        return split_problems(typed, labels, cfg, history) | constant_series(
            typed.loc[labels == "train", ["unique_id", "y"]], season_of(cfg)  # no ds copy
        ) | (non_positive_series(typed) if cfg.preprocess.target_transform == "log" else {})

    # the raw frame is handed over, not kept here: validate_panel frees it once checked
    df, dropped = validate_panel(
        load_raw(cfg.data), cfg.data, need, cfg.preprocess.max_missing_fraction, series_problems
    )
    run_url = str(run_dir)
    snap = write_snapshot(df, artifact_store.join(run_url, "ingest"))
    n_series = int(df["unique_id"].nunique())
    report = artifact_store.write_text(
        artifact_store.join(run_url, "ingest", "validation.json"),
        json.dumps(
            {"series": n_series, "policy": cfg.data.invalid_series, "dropped": dropped}, indent=2
        ),
    )
    for uid, reasons in dropped.items():
        _step(f"ingest: dropped series {uid!r}: {'; '.join(reasons)}")
    effective = artifact_store.write_text(
        artifact_store.join(run_url, "config.yaml"),
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
    )
    _step(
        f"ingest: {snap.rows} rows of {n_series} series validated"
        + (f" ({len(dropped)} dropped)" if dropped else "")
        + f", snapshot {snap.url} (sha256 {snap.sha256})"
    )
    return {
        "config": effective,
        "snapshot": snap.url,
        "sha256": snap.sha256,
        "rows": snap.rows,
        "series": n_series,
        "validation": report,
    }


def _check_cross_fit(cfg: ExperimentConfig) -> None:
    """A weighted ensemble is scored for selection by cross-fitting over two halves of each
    series' validation windows (``ensemble``): refuse, before any training, a run that would
    build one with a single validation window per series."""
    ens = cfg.ensemble
    if not (ens.enabled and ens.combine == "weighted" and len(cfg.algorithms) >= 2):
        return
    windows = cfg.split.val_size - cfg.horizon + 1
    if windows < 2:
        raise ConfigError(
            f"split.val_size: {cfg.split.val_size} gives {windows} validation window(s) per "
            f"series of horizon {cfg.horizon}; ensemble.combine 'weighted' fits its weights on "
            "one half of them and scores it on the other, so it needs at least 2: set "
            f"split.val_size to at least {cfg.horizon + 1} (or ensemble.combine: mean or median)"
        )


def constant_series(train: pd.DataFrame, season: int) -> dict[str, str]:
    """Series whose training target never changes at the seasonal lag: their MASE scale is
    zero and there is nothing to learn (series id -> reason)."""
    y = train["y"]
    lagged = y.groupby(train["unique_id"].to_numpy(), sort=False).shift(season)
    moves = (y - lagged).abs().gt(0).groupby(train["unique_id"].to_numpy(), sort=False).any()
    return {
        str(uid): f"constant target in the training rows at lag {season} (MASE undefined)"
        for uid in moves.index[~moves.to_numpy()]
    }


def non_positive_series(typed: pd.DataFrame) -> dict[str, str]:
    """Series with a target value <= 0, which ``preprocess.target_transform: log`` cannot
    take (series id -> reason)."""
    bad = typed["y"].le(0).groupby(typed["unique_id"].to_numpy(), sort=False).sum()
    return {str(uid): f"{int(n)} target value(s) <= 0 (preprocess.target_transform: log "
            "needs y > 0)" for uid, n in bad[bad > 0].items()}


# ----- stage 2: preprocess ----------------------------------------------------------------------
def preprocess(ingested: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Split, fit the preprocessor on training rows only, write the prepared series."""
    cfg = run_config(ingested["config"])
    df = read_snapshot(ingested["snapshot"], ingested["sha256"])
    # rows grouped by series (in order of appearance), each series in time order; a snapshot
    # already grouped (the usual case) is not copied
    first_seen = pd.factorize(df["unique_id"])[0]
    if (np.diff(first_seen) < 0).any():
        df = df.iloc[np.argsort(first_seen, kind="stable")].reset_index(drop=True)
    del first_seen
    labels = split_labels(df, cfg.split, cfg.data.freq)
    pre = Preprocessor(cfg.preprocess).fit(df[labels == "train"])
    columns, scaled = pre.scaled_columns(df)
    out = dict(zip(columns, scaled.T, strict=True))
    prepared = pd.DataFrame(  # the columns as they are: no copy of the frame
        {
            "unique_id": df["unique_id"].to_numpy(),
            "ds": df["ds"].to_numpy(),
            "y": df["y"].to_numpy(float),
            "y_scaled": out["y"],
            "split": labels,
            **{panel.EXOG_PREFIX + c: out[c] for c in cfg.data.exog_columns},
        },
        copy=False,
    )
    del df, out, scaled
    stage = artifact_store.join(str(run_dir), "preprocess")
    prepared_url = artifact_store.write_parquet(
        prepared, artifact_store.join(stage, "prepared.parquet")
    )
    pre_url = artifact_store.write_text(
        artifact_store.join(stage, "preprocessor.json"), json.dumps(pre.to_dict(), indent=2)
    )
    counts = prepared["split"].value_counts().to_dict()
    spec = ExogSpec.from_config(cfg.data)
    _step(
        f"preprocess: train {counts.get('train', 0)}, val {counts.get('val', 0)}, "
        f"test {counts.get('test', 0)} rows ({cfg.split.align} split); "
        f"{cfg.preprocess.scaler} scaler fitted per series on train"
        + (f"; regressors {spec.to_dict()}" if spec else "")
    )
    return {
        **ingested,
        "prepared": prepared_url,
        "preprocessor": pre_url,
        "algorithms": sorted(cfg.algorithms),
    }


# ----- stage 3: tune ---------------------------------------------------------------------------
def tune(prepared: dict[str, Any], algorithm: str, home: TidemillHome) -> dict[str, Any]:
    """Optuna study for one algorithm on the training rows (rolling-origin CV)."""
    cfg = run_config(prepared["config"])
    engine.configure(cfg.engine.kind, cfg.engine.address)
    series = panel.read_prepared(prepared["prepared"], ExogSpec.from_config(cfg.data))
    _step(
        f"tune {algorithm}: {cfg.tuning.n_trials} trials, {cfg.tuning.cv_folds} folds, "
        f"{len(series)} series"
    )
    started = time.perf_counter()
    result = tuning.tune(
        algorithm,
        cfg.algorithms[algorithm],
        [s.y[s.train] for s in series],
        [s.ds[s.train] for s in series],
        cfg.horizon,
        cfg.tuning,
        storage=Settings.resolve(home, cfg).optuna_storage_url,
        study_name=f"{cfg.name}-{algorithm}-h{cfg.horizon}",
        mase_denominator=[evaluation.mase_scale(s.y[s.train], season_of(cfg)) for s in series],
        min_train=min_fit_rows(cfg, algorithm),
        ids=[s.uid for s in series],
        exog=_train_regressors(series, cfg, algorithm),
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
    """Fit the tuned model on train, calibrate intervals on val, evaluate on val and test (with
    ``split.refit``: test with a second fit on train + val, which is also the one saved), and
    log everything (params, metrics, plots, model) as one MLflow run."""
    import mlflow

    cfg = run_config(prepared["config"])
    engine.configure(cfg.engine.kind, cfg.engine.address)
    algorithm = tuned["algorithm"]
    spec = ExogSpec.from_config(cfg.data)
    series = panel.read_prepared(prepared["prepared"], spec)
    ids = [s.uid for s in series]
    pre = Preprocessor.from_dict(json.loads(artifact_store.read_text(prepared["preprocessor"])))
    refit = cfg.split.refit

    def fit(rows: Callable[[panel.SeriesData], np.ndarray], bundle: str) -> Any:
        """The candidate fitted on ``rows`` of each series (an ensemble: of its members'
        ``bundle``s, fitted on the same rows)."""
        _step(
            f"train {algorithm}: fitting on {sum(len(rows(s)) for s in series)} rows of "
            f"{len(series)} series with {tuned['best_params']}"
        )
        if algorithm == ENSEMBLE:
            return _ensemble_model(cfg, tuned, bundle)
        return panel.fit(
            algorithm,
            cfg.horizon,
            {"level": cfg.level, "freq": cfg.data.freq, "seed": cfg.tuning.seed,
             **tuned["best_params"]},
            [s.y[rows(s)] for s in series],
            [s.ds[rows(s)] for s in series],
            ids,
            *_train_regressors(series, cfg, algorithm, rows),
        )

    started = time.perf_counter()
    model = fit(_train_rows, VAL_BUNDLE if refit else "bundle")
    fit_s = time.perf_counter() - started
    uses = spec if any(model.exog_inputs) else ExogSpec()
    if spec and not uses:
        opted_out = algorithm != ENSEMBLE and not cfg.algorithms[algorithm].exogenous
        _step(f"train {algorithm}: no regressors: " + (
            f"algorithms.{algorithm}.exogenous is false" if opted_out
            else "this model does not use them (see README)"))
    panel.calibrate(model, series, cfg.horizon)
    final, refit_s = model, 0.0
    if refit:  # selected and calibrated on validation as fitted above; tested as refitted
        started_refit = time.perf_counter()
        final = fit(_refit_rows, "bundle")
        refit_s = time.perf_counter() - started_refit
        panel.copy_calibration(model, final, ids)
    season = season_of(cfg)
    results, tables, forecasts, scaled_points = {}, {}, {}, {}
    for part in ("val", "test"):
        # the in-sample of a part's windows scales MASE: train, or train + val once refitted
        insample = _refit_rows if part == "test" and refit else _train_rows
        mase_dens = [evaluation.mase_scale(s.y_raw[insample(s)], season) for s in series]
        fitted = final if part == "test" else model
        widths = panel.halfwidths(fitted, ids)
        part_origins = [panel.origins(getattr(s, part), cfg.horizon) for s in series]
        points = panel.forecast(
            fitted, [s.y for s in series], [s.ds for s in series], part_origins, ids,
            [s.xh for s in series], [s.xf for s in series],
        )
        # per series, in original units: actual, point, lower, upper (n_origins, horizon)
        windows = []
        for s, o, p, w in zip(series, part_origins, points, widths, strict=True):
            inv = [uid_inverse(pre, s.uid, v) for v in (p, p - w, p + w)]
            windows.append((evaluation.actual_windows(s.y_raw, o, cfg.horizon), *inv))
        actual, point, lower, upper = (np.concatenate(x) for x in zip(*windows, strict=True))
        dens = np.concatenate(
            [np.full((len(o), 1), d) for o, d in zip(part_origins, mase_dens, strict=True)]
        )
        ev = evaluation.evaluate(actual, point, lower, upper, dens)
        reference = [
            naive2.forecast(s.y_raw, o, cfg.horizon, season)
            for s, o in zip(series, part_origins, strict=True)
        ]
        ref = evaluation.evaluate(actual, np.concatenate(reference), None, None, dens).overall
        ev.overall["naive2_smape"], ev.overall["naive2_mase"] = ref["smape"], ref["mase"]
        ev.overall["owa"] = naive2.owa(
            ev.overall["smape"], ev.overall["mase"], ref["smape"], ref["mase"]
        )
        scaled = np.concatenate(
            [evaluation.actual_windows(s.y, o, cfg.horizon) for s, o in zip(series, part_origins,
                                                                               strict=True)]
        )
        ev.overall["mse_scaled"] = float(evaluation.mse(scaled, np.concatenate(points)))
        ev.overall["mae_scaled"] = float(evaluation.mae(scaled, np.concatenate(points)))
        results[part] = ev
        tables[part] = evaluation.series_table(ids, *map(list, zip(*windows, strict=True)),
                                               mase_dens)
        ref_table = evaluation.series_table(
            ids, [w[0] for w in windows], reference, reference, reference, mase_dens
        )
        tables[part]["owa"] = 0.5 * (
            tables[part]["smape"] / ref_table["smape"] + tables[part]["mase"] / ref_table["mase"]
        )
        forecasts[part] = (part_origins, windows)
        scaled_points[part] = np.concatenate(points)
    eval_s = time.perf_counter() - started - fit_s - refit_s
    in_sample = results["val"].overall[cfg.selection_metric]
    cross = tuned.get("cross_fit")  # a weighted ensemble: scored out of the half it was fitted on
    selection_score = in_sample if cross is None else cross["score"]
    _step(
        f"train {algorithm}: val {cfg.selection_metric} "
        f"{in_sample:.4f} ({_n_windows(forecasts['val'][0])}"
        f" windows{'' if cross is None else f'; cross-fitted {selection_score:.4f}'}), test MAE "
        f"{results['test'].overall['mae']:.4f}, sMAPE {results['test'].overall['smape']:.3f}, "
        f"MASE {results['test'].overall['mase']:.3f}, OWA {results['test'].overall['owa']:.3f}, "
        "coverage "
        f"{results['test'].overall.get('coverage', float('nan')):.2f} "
        f"(fit {fit_s:.1f}s{f', refit {refit_s:.1f}s' if refit else ''}, eval {eval_s:.1f}s)"
    )

    from pipelines.bundle import ForecastBundle

    scratch = tempfile.TemporaryDirectory(prefix=f"tidemill-{algorithm}-")
    cand_dir = Path(scratch.name)
    bundle_dir = cand_dir / "bundle"
    last = series[0]
    meta = {
        "series_id": cfg.data.series_id if len(series) == 1 else None,
        "n_series": len(series),
        "target": cfg.data.target_column,
        "experiment": cfg.name,
        "snapshot_sha256": prepared["sha256"],
        "trained_until": str(max(s.ds[(_refit_rows if refit else _train_rows)(s)[-1]]
                                 for s in series)),
        "exogenous": uses.to_dict() if uses else None,
    }
    ForecastBundle(pre, final, meta).save(bundle_dir)
    if refit and cfg.ensemble.enabled and algorithm != ENSEMBLE:
        # the fit on train that validation scored: an ensemble's members on validation
        ForecastBundle(pre, model, {**meta, "trained_until": str(
            max(s.ds[s.train_end - 1] for s in series))}).save(cand_dir / VAL_BUNDLE)
    if cfg.ensemble.enabled and cfg.ensemble.combine == "weighted" and algorithm != ENSEMBLE:
        # what ensemble() weighs the members on, instead of forecasting validation again
        np.save(cand_dir / VAL_FORECASTS, scaled_points["val"])

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
                "n_series": len(series),
                "refit": refit,
                **{f"hp.{k}": v for k, v in tuned["best_params"].items()},
                **({"exogenous": json.dumps(uses.to_dict())} if uses else {}),
                **({f"cross_fit.{k}": json.dumps(v) for k, v in cross.items() if k != "score"}
                   if cross else {}),
            }
        )
        for part, ev in results.items():
            mlflow.log_metrics({f"{part}_{k}": v for k, v in ev.overall.items() if np.isfinite(v)})
        registry.log_curves({f"{part}_{metric}_by_step": curve for part, ev in results.items()
                             for metric, curve in ev.per_step.items()})
        mlflow.log_metrics(
            {
                "fit_seconds": fit_s,
                **({"refit_seconds": refit_s} if refit else {}),
                "eval_seconds": eval_s,
                "tune_seconds": float(tuned.get("seconds", 0.0)),
                "test_mape_zero_actuals_skipped": results["test"].mape_zero_actuals_skipped,
                # what select() ranks: the validation metric over every validation window
                # (of the out-of-half forecasts for a weighted ensemble)
                "selection_score": selection_score,
                "selection_windows": _n_windows(forecasts["val"][0]),
                **({} if cross is None else {"selection_score_in_sample": in_sample,
                                             "selection_score_cross_fitted": cross["score"]}),
            }
        )
        mlflow.set_tag("tidemill.selection_metric", cfg.selection_metric)
        if tuned.get("best_value") is not None:
            mlflow.log_metric("cv_best_value", tuned["best_value"])
        plots = cand_dir / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        _series_plots(algorithm, series, tables["test"], forecasts["test"], plots)
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
        for part, table in tables.items():
            table.to_csv(cand_dir / f"series_metrics_{part}.csv", index=False)
            mlflow.log_artifact(str(cand_dir / f"series_metrics_{part}.csv"))
        if prepared.get("validation"):
            report = cand_dir / "validation.json"
            report.write_text(artifact_store.read_text(prepared["validation"]))
            mlflow.log_artifact(str(report))
        example = _input_example(
            df_raw=read_snapshot(prepared["snapshot"], prepared["sha256"]),
            uid=last.uid,
            rows=slice(last.train_end - final.min_history, last.train_end),
            horizon=cfg.horizon,
            spec=uses,
            series_id=last.uid if len(series) > 1 else cfg.data.series_id,
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
        "val_metric": selection_score,
        "metric": cfg.selection_metric,
        "val": results["val"].overall,
        "test": results["test"].overall,
    }


def _n_windows(origins_per_series: list[np.ndarray]) -> int:
    """Forecast windows over every series."""
    return sum(len(o) for o in origins_per_series)


def _train_rows(s: panel.SeriesData) -> np.ndarray:
    return s.train


def _refit_rows(s: panel.SeriesData) -> np.ndarray:
    """Every row before the test window (``split.refit``)."""
    return np.concatenate([s.train, s.val])


def _train_regressors(
    series: list[panel.SeriesData], cfg: ExperimentConfig, algorithm: str,
    rows: Callable[[panel.SeriesData], np.ndarray] = _train_rows,
) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """The historical and future regressors of each series' ``rows`` (the training rows) for
    ``algorithm`` (None without, or where its config opts out:
    ``algorithms.<name>.exogenous: false``)."""
    if not cfg.algorithms[algorithm].exogenous:
        return None, None
    return tuple(  # type: ignore[return-value]
        None if getattr(series[0], name) is None
        else [getattr(s, name)[rows(s)] for s in series]
        for name in ("xh", "xf")
    )


def _input_example(
    df_raw: pd.DataFrame, uid: str, rows: slice, horizon: int, spec: ExogSpec, series_id: str
) -> pd.DataFrame:
    """The logged input example: ``rows`` of one series (``ds, y`` and the historical
    regressors) and, for future regressors, the next ``horizon`` rows with ``y`` left empty
    (the pyfunc's form of future values, ``pipelines.pyfunc_model``)."""
    own = df_raw[df_raw["unique_id"].astype(str) == uid].reset_index(drop=True)
    end = rows.stop + (horizon if spec.future else 0)
    part = own.iloc[rows.start : end]
    example = pd.DataFrame({"unique_id": series_id, "ds": part["ds"].to_numpy(),
                            "y": part["y"].to_numpy(float)})
    for column in (*spec.historical, *spec.future):
        example[column] = part[column].astype(float).ffill().bfill().to_numpy()
    if spec.future:
        example.loc[rows.stop - rows.start :, "y"] = np.nan
        example.loc[rows.stop - rows.start :, list(spec.historical)] = np.nan
    return example


def uid_inverse(pre: Preprocessor, uid: str, values: np.ndarray) -> np.ndarray:
    """Scaled values of series ``uid`` back in its original units."""
    return pre.inverse_transform_target(values, [uid] * len(values))


def _series_plots(
    algorithm: str,
    series: list[panel.SeriesData],
    table: pd.DataFrame,
    forecasts: tuple[list[np.ndarray], list[tuple[np.ndarray, ...]]],
    plots: Path,
) -> None:
    """The last test forecast of the median series (``forecast_vs_actual.png``); with several
    series also the best, median and worst by test MASE and the per-series error histograms."""
    origins, windows = forecasts
    ranked = table["mase"].to_numpy().argsort(kind="stable")
    picks = {"median": int(ranked[len(ranked) // 2])}
    if len(series) > 1:
        picks = {"best": int(ranked[0]), **picks, "worst": int(ranked[-1])}
        evaluation.plot_error_distribution(
            table, ["smape", "mase"], f"{algorithm}: test error per series",
            plots / "error_distribution.png",
        )
    for label, k in picks.items():
        s = series[k]
        _, point, lower, upper = windows[k]
        name = "forecast_vs_actual.png" if label == "median" else f"series_{label}.png"
        evaluation.plot_forecast(
            s.ds, s.y_raw, int(origins[k][-1]), point[-1], lower[-1], upper[-1],
            f"{algorithm}: last test forecast, series {s.uid!r} ({label} test MASE "
            f"{table['mase'].iat[k]:.3f})",
            plots / name,
        )


# ----- stage 4b: the ensemble candidate ----------------------------------------------------------
ENSEMBLE = "ensemble"
VAL_FORECASTS = "val_forecasts.npy"  # a candidate's scaled validation forecasts, every window
VAL_BUNDLE = "val_bundle"  # with split.refit: a candidate as fitted on train (ensembles use it)


def ensemble(
    prepared: dict[str, Any],
    candidates: list[dict[str, Any]],
    run_dir: str | Path,
    home: TidemillHome,
    pipeline_run: str,
) -> list[dict[str, Any]]:
    """The candidates, plus (when ``ensemble.enabled``) the mean, median or weighted mean of
    the best ``ensemble.top_k`` of them on validation, trained, evaluated and logged like any
    candidate."""
    cfg = run_config(prepared["config"])
    spec, candidates = cfg.ensemble, list(candidates)
    if not spec.enabled:
        return candidates
    best = sorted(candidates, key=lambda c: c["val_metric"])[: spec.top_k]
    if len(best) < 2:
        _step(f"ensemble: {len(best)} candidate(s), at least 2 needed; no ensemble")
        return candidates
    params: dict[str, Any] = {"combine": spec.combine}
    cross: dict[str, Any] | None = None
    if spec.combine == "weighted":
        weights, cross = _greedy_weights(prepared, cfg, best)
        best = [c for c, w in zip(best, weights, strict=True) if w > 0]
        params["weights"] = [round(float(w), 6) for w in weights if w > 0]
    members = [c["algorithm"] for c in best]
    _step(f"ensemble: {spec.combine} of {members}"
          + (f" with weights {params['weights']}" if "weights" in params else "")
          + f" (best on validation {cfg.selection_metric})")
    tuned = {
        "algorithm": ENSEMBLE,
        "best_params": {"members": members, **params},
        "best_value": None,
        "members": [c["candidate"] for c in best],
        "cross_fit": cross,
    }
    return [*candidates, train(prepared, tuned, run_dir, home, pipeline_run)]


def _greedy_weights(
    prepared: dict[str, Any], cfg: ExperimentConfig, pool: list[dict[str, Any]]
) -> tuple[np.ndarray, dict[str, Any]]:
    """The members' weights by greedy forward selection (``ensemble.rounds``) on the pool's
    saved validation forecasts, minimising the selection metric as ``train`` computes it; and
    the ensemble's cross-fitted selection score: its metric over every validation window of the
    out-of-half forecasts (``pipelines.models.ensemble.cross_fit``: weights fitted on the first
    half of each series' windows by origin forecast the second half, and vice versa)."""
    from pipelines.models.ensemble import cross_fit, first_halves, greedy_weights

    series = panel.read_prepared(prepared["prepared"], ExogSpec.from_config(cfg.data))
    pre = Preprocessor.from_dict(json.loads(artifact_store.read_text(prepared["preprocessor"])))
    season, metric = season_of(cfg), cfg.selection_metric
    val_origins = [panel.origins(s.val, cfg.horizon) for s in series]
    row_ids = np.concatenate([np.full(len(o), s.uid, dtype=object)
                              for s, o in zip(series, val_origins, strict=True)])
    actual = np.concatenate([evaluation.actual_windows(s.y_raw, o, cfg.horizon)
                             for s, o in zip(series, val_origins, strict=True)])
    dens = np.concatenate([np.full((len(o), 1), evaluation.mase_scale(s.y_raw[s.train], season))
                           for s, o in zip(series, val_origins, strict=True)])
    reference = np.concatenate([naive2.forecast(s.y_raw, o, cfg.horizon, season)
                                for s, o in zip(series, val_origins, strict=True)])
    refs: dict[bytes, dict[str, float]] = {}  # Naive2's metrics on each set of rows scored

    def score(scaled: np.ndarray, rows: np.ndarray) -> float:
        point = pre.inverse_transform_target(scaled, row_ids[rows])
        ev = evaluation.evaluate(actual[rows], point, None, None, dens[rows]).overall
        if metric != "owa":
            return ev[metric]
        key = rows.tobytes()
        if key not in refs:
            refs[key] = evaluation.evaluate(
                actual[rows], reference[rows], None, None, dens[rows]).overall
        return naive2.owa(ev["smape"], ev["mase"], refs[key]["smape"], refs[key]["mase"])

    forecasts = []
    for c in pool:
        with artifact_store.local_file(artifact_store.join(c["candidate"], VAL_FORECASTS)) as f:
            forecasts.append(np.load(f))
    every = np.ones(len(actual), dtype=bool)
    weights = greedy_weights(forecasts, lambda p: score(p, every), cfg.ensemble.rounds)
    first = first_halves([len(o) for o in val_origins])
    if not first.any():  # align: common can leave every series a single window
        raise ValueError(
            f"ensemble.combine 'weighted': no series has 2 validation windows to cross-fit its "
            f"selection score over; raise split.val_size (now {cfg.split.val_size})"
        )
    out_of_half, w_first, w_second = cross_fit(forecasts, first, score, cfg.ensemble.rounds)
    names = [c["algorithm"] for c in pool]
    cross = {
        "score": score(out_of_half, every),
        "weights_first_half": dict(zip(names, np.round(w_first, 6).tolist(), strict=True)),
        "weights_second_half": dict(zip(names, np.round(w_second, 6).tolist(), strict=True)),
        "windows_first_half": int(first.sum()),
        "windows_second_half": int((~first).sum()),
    }
    _step(f"ensemble: weights by greedy selection on every validation window ({cfg.ensemble.rounds}"
          f" rounds, {metric}): " + ", ".join(f"{n}={w:.2f}" for n, w in zip(names, weights,
                                                                             strict=True))
          + f"; cross-fitted {metric} {cross['score']:.4f} (first half's weights "
          f"{cross['weights_first_half']} on the second half's {cross['windows_second_half']}"
          f" windows, second half's {cross['weights_second_half']} on the first's "
          f"{cross['windows_first_half']}): its selection score")
    return weights, cross


def _ensemble_model(cfg: ExperimentConfig, tuned: dict[str, Any], bundle: str = "bundle"
                    ) -> Any:
    """The ensemble of the member candidates' fitted forecasters (read from their ``bundle``s:
    ``bundle``, or ``val_bundle``, each member as fitted on train before ``split.refit``)."""
    from pipelines.bundle import ForecastBundle
    from pipelines.models.ensemble import Ensemble
    from pipelines.models.per_series import PerSeries

    members = []
    for url in tuned["members"]:
        with artifact_store.local_copy(artifact_store.join(url, bundle)) as local:
            member = ForecastBundle.load(local).forecaster
            if isinstance(member, PerSeries):  # read every series' model while the copy exists
                for uid in member.ids:
                    member.model(uid)
            members.append(member)
    return Ensemble(
        cfg.horizon,
        members,
        combine=tuned["best_params"]["combine"],
        weights=tuned["best_params"].get("weights"),
        level=cfg.level,
        freq=cfg.data.freq,
        seed=cfg.tuning.seed,
    )


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
    """ingest → preprocess → tune and train each algorithm → ensemble → select → register."""
    run_key = run_key or time.strftime("cli-%Y%m%dT%H%M%S")
    run_dir = Settings.resolve(home).store.url("runs", run_key)
    ingested = ingest(config_path, run_dir, algorithms, n_trials, horizon)
    prepared = preprocess(ingested, run_dir)
    candidates = []
    for algorithm in prepared["algorithms"]:
        tuned = tune(prepared, algorithm, home)
        candidates.append(train(prepared, tuned, run_dir, home, run_key))
    candidates = ensemble(prepared, candidates, run_dir, home, run_key)
    best = select(candidates)
    registered = register(prepared, best, home, run_key)
    return {"run_key": run_key, "candidates": candidates, "registered": registered}
