"""Optuna tuning per algorithm with rolling-origin time-series cross-validation.

On a panel the folds are cut in each series' own training rows, global models are fitted once
per fold on every series, and the objective is the mean over series of each series' metric
(on scaled values), so a few large series cannot dominate.

Studies live in an Optuna storage URL (SQLite in the Tidemill home by default), named after
the experiment, algorithm and horizon, so a study resumes where it stopped and several
workers can add trials to it at once. Folds report to a median pruner. With the Ray engine
(``pipelines.engine``) each trial is a Ray task on the shared study (its sampler seeded per
task; parallel TPE trials do not see each other's results, so a study is no longer bit-for-bit
repeatable there), the data put once into Ray's object store. A trial whose worker died is
marked failed and its task runs again as a new trial with the same sampler seed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import engine, evaluation
from pipelines.config import AlgorithmConfig, SearchParam, TuningConfig

log = logging.getLogger(__name__)

FAN_OUT_ATTR = "tidemill.fan_out"
"""A Ray trial's user attribute: the fan-out that ran it (``_fail_orphans``)."""


@dataclass(frozen=True)
class Fold:
    """Fit on ``y[:fit_end]``; forecast from ``origins`` (all within the training rows)."""

    fit_end: int
    origins: np.ndarray


@dataclass
class TuneResult:
    algorithm: str
    best_params: dict[str, Any]
    best_value: float | None
    n_trials: int
    study_name: str | None
    storage: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rolling_origin_folds(
    n: int, horizon: int, n_folds: int, min_train: int, max_origins: int
) -> list[Fold]:
    """Expanding-window folds over the last part of a series of length ``n``.

    The tail after ``min_train`` is cut into ``n_folds`` equal blocks; fold k fits on
    everything before block k and forecasts from (at most ``max_origins``, evenly spaced)
    origins inside it whose horizon stays inside the block.
    """
    tail = n - min_train
    block = tail // n_folds
    if block < horizon + 1:
        raise ValueError(
            f"cross-validation needs {n_folds} folds of at least {horizon + 1} rows after "
            f"{min_train} history rows; the training part has only {n} rows"
        )
    folds = []
    for k in range(n_folds):
        start = min_train + k * block
        last_origin = start + block - horizon
        origins = np.arange(start, last_origin + 1)
        if len(origins) > max_origins:
            origins = np.unique(np.linspace(start, last_origin, max_origins).round().astype(int))
        folds.append(Fold(fit_end=start, origins=origins))
    return folds


def suggest(trial: Any, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Sample one parameter set from a config search space."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "int":
            step = int(p.step) if p.step else 1
            params[name] = trial.suggest_int(name, int(p.low), int(p.high), step=step, log=p.log)
        elif p.type == "float":
            params[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        else:
            params[name] = trial.suggest_categorical(name, p.choices)
    return params


def cv_score(
    algorithm: str,
    params: dict[str, Any],
    y: np.ndarray | list[np.ndarray],
    ds: np.ndarray | list[np.ndarray | None] | None,
    horizon: int,
    folds: list[Fold] | list[list[Fold]],
    metric: str,
    mase_denominator: float | list[float],
    seed: int,
    report: Any = None,
    ids: list[str] | None = None,
    exog: tuple[list[np.ndarray] | None, list[np.ndarray] | None] = (None, None),
) -> float:
    """Mean validation metric over the folds; ``report(step, value)`` after each fold.

    For a panel, ``y``/``ds``/``mase_denominator`` are lists (one per series) and ``folds``
    one list of folds per series; a fold's score is the mean over series. ``exog``: the
    historical and future regressors of each series (``pipelines.exogenous``), or None.
    With the Ray engine the folds are scored as Ray tasks (the data put once)."""
    ys, dss, dens, fold_lists = _as_lists(y, ds, mase_denominator, folds)
    ids = ids or [str(k) for k in range(len(ys))]
    data = _FoldData(algorithm, {"seed": seed, **params}, ys, dss, horizon, fold_lists,
                     metric, dens, ids, exog)  # fmt: skip
    n_folds = len(fold_lists[0])
    if engine.parallel():  # every fold a Ray task; reported (and pruned) in order after
        fold_scores = iter(engine.fan_out(_fold_score, range(n_folds), data))
    else:  # one after the other, so a pruned trial stops early
        fold_scores = (_fold_score(k, data) for k in range(n_folds))
    scores = []
    for k, score in enumerate(fold_scores):
        scores.append(score)
        if report is not None:
            report(k, float(np.mean(scores)))
    return float(np.mean(scores))


@dataclass
class _FoldData:
    """What scoring one cross-validation fold needs (a Ray task's shared input)."""

    algorithm: str
    params: dict[str, Any]
    ys: list[np.ndarray]
    dss: list[np.ndarray | None]
    horizon: int
    fold_lists: list[list[Fold]]
    metric: str
    dens: list[float]
    ids: list[str]
    exog: tuple[list[np.ndarray] | None, list[np.ndarray] | None]


def _fold_score(k: int, d: _FoldData) -> float:
    """Fold ``k``: fit on every series' rows before it, the mean over series of the metric of
    the forecasts from its origins."""
    from pipelines import panel

    xhs, xfs = d.exog
    fit_ends = [f[k].fit_end for f in d.fold_lists]
    model = panel.fit(
        d.algorithm,
        d.horizon,
        d.params,
        [v[:e] for v, e in zip(d.ys, fit_ends, strict=True)],
        [None if t is None else t[:e] for t, e in zip(d.dss, fit_ends, strict=True)],
        d.ids,
        *(None if x is None else [v[:e] for v, e in zip(x, fit_ends, strict=True)]
          for x in (xhs, xfs)),
    )
    fold_origins = [f[k].origins for f in d.fold_lists]
    if min(o.min() for o in fold_origins) < model.min_history:
        raise ValueError(
            f"{d.algorithm} needs {model.min_history} history values; fold {k} starts at "
            f"{min(fit_ends)}"
        )
    preds = panel.forecast(model, d.ys, d.dss, fold_origins, d.ids, xhs, xfs)
    per_series = [
        evaluation.evaluate(
            evaluation.actual_windows(v, o, d.horizon), p, None, None, den
        ).overall[d.metric]
        for v, o, p, den in zip(d.ys, fold_origins, preds, d.dens, strict=True)
    ]
    return float(np.mean(per_series))


def _as_lists(y: Any, ds: Any, dens: Any, folds: Any) -> tuple[list, list, list, list]:
    """One series' arguments as lists of one (the panel form)."""
    if isinstance(y, list):
        return y, list(ds) if ds is not None else [None] * len(y), list(dens), folds
    return [y], [ds], [dens], [folds]


def tune(
    algorithm: str,
    algo_cfg: AlgorithmConfig,
    y_train: np.ndarray | list[np.ndarray],
    ds_train: np.ndarray | list[np.ndarray | None] | None,
    horizon: int,
    cfg: TuningConfig,
    storage: str,
    study_name: str,
    mase_denominator: float | list[float],
    min_train: int,
    ids: list[str] | None = None,
    exog: tuple[list[np.ndarray] | None, list[np.ndarray] | None] = (None, None),
) -> TuneResult:
    """Run (or resume) the study; an empty search space returns the fixed params untuned.

    ``y_train`` is one series or a list of series (then ``ds_train`` and
    ``mase_denominator`` are lists too)."""
    if not algo_cfg.search_space:
        log.info("%s: no search space, using fixed params %s", algorithm, algo_cfg.params)
        return TuneResult(algorithm, dict(algo_cfg.params), None, 0, None, None)

    import optuna

    ys = y_train if isinstance(y_train, list) else [y_train]
    folds = [
        rolling_origin_folds(len(v), horizon, cfg.cv_folds, min_train, cfg.max_origins_per_fold)
        for v in ys
    ]
    if not isinstance(y_train, list):
        folds = folds[0]
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = max(0, cfg.n_trials - done)

    problem = _Problem(algorithm, algo_cfg, y_train, ds_train, horizon, folds, cfg.metric,
                       mase_denominator, cfg.seed, ids, exog)  # fmt: skip
    if remaining:
        log.info(
            "%s: %d trials to run (%d already in study %s)", algorithm, remaining, done, study_name
        )
        if engine.kind() == "ray" and remaining > 1 and cfg.timeout_s is None:
            # one trial per Ray task, all on the shared study (its storage is the rendezvous)
            fan_out = uuid.uuid4().hex
            before = {t.number for t in study.get_trials(deepcopy=False)}
            try:
                engine.fan_out(_ray_trial, range(remaining),
                               (problem, study_name, storage, fan_out))  # fmt: skip
            finally:
                _fail_orphans(study_name, storage, fan_out, before)
        else:
            study.optimize(
                problem.objective,
                n_trials=remaining,
                timeout=cfg.timeout_s,
                show_progress_bar=False,
                callbacks=[_progress(algorithm, cfg.n_trials)],
            )
        study = optuna.load_study(study_name=study_name, storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"{algorithm}: no trial of study {study_name} completed")
    best = study.best_trial
    return TuneResult(
        algorithm,
        {**algo_cfg.params, **best.params},
        float(best.value),
        len(study.trials),
        study_name,
        storage,
    )


@dataclass
class _Problem:
    """What one trial needs: the data, folds and scoring of a study (a Ray task's input)."""

    algorithm: str
    algo_cfg: AlgorithmConfig
    y_train: Any
    ds_train: Any
    horizon: int
    folds: Any
    metric: str
    mase_denominator: Any
    seed: int
    ids: list[str] | None
    exog: tuple[Any, Any]

    def objective(self, trial: Any) -> float:
        import optuna

        params = {**self.algo_cfg.params, **suggest(trial, self.algo_cfg.search_space)}

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return cv_score(self.algorithm, params, self.y_train, self.ds_train, self.horizon,
                        self.folds, self.metric, self.mase_denominator, self.seed, report,
                        self.ids, self.exog)  # fmt: skip


def _ray_trial(k: int, shared: tuple[_Problem, str, str, str]) -> None:
    """One trial of the shared study, in a Ray task (sampler seeded per task, so a task run
    again after its worker died samples what the first try did), tagged with its fan-out."""
    import optuna

    problem, study_name, storage, fan_out = shared

    def objective(trial: Any) -> float:
        trial.set_user_attr(FAN_OUT_ATTR, fan_out)
        return problem.objective(trial)

    study = optuna.load_study(
        study_name=study_name, storage=storage,
        sampler=optuna.samplers.TPESampler(seed=problem.seed + 1 + k),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )  # fmt: skip
    study.optimize(objective, n_trials=1, show_progress_bar=False)
    trial = study.trials[-1]
    print(f"[tidemill]   {problem.algorithm} trial {trial.number} (Ray task {k}): "
          f"{trial.state.name.lower()} {trial.value}", flush=True)


def _fail_orphans(study_name: str, storage: str, fan_out: str, before: set[int]) -> None:
    """Mark failed the trials a fan-out left running: their worker died (Ray ran the task
    again, as a new trial), so no one will finish them. Its trials carry its tag, or, when the
    worker died before the objective began, no tag (created during the fan-out)."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        tag = trial.user_attrs.get(FAN_OUT_ATTR)
        if tag == fan_out or (tag is None and trial.number not in before):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            log.warning("%s: trial %d failed: its Ray worker died (the task ran again)",
                        study_name, trial.number)


def _progress(algorithm: str, total: int) -> Any:
    """An Optuna callback printing one line per finished trial (progress in Airflow logs)."""
    import optuna

    complete = optuna.trial.TrialState.COMPLETE

    def callback(study: Any, trial: Any) -> None:
        n = len([t for t in study.trials if t.state.is_finished()])
        if trial.state == optuna.trial.TrialState.PRUNED:
            value = f"pruned after fold {max(trial.intermediate_values) + 1}"
        else:
            value = "failed" if trial.value is None else f"{trial.value:.4f}"
        done = [t for t in study.trials if t.state == complete]
        best = f"{study.best_value:.4f}" if done else "-"
        print(f"[tune {algorithm}] trial {n}/{max(total, n)}: {value} (best {best})", flush=True)

    return callback


def history_plot(storage: str, study_name: str, path: Path) -> Path | None:
    """Optuna optimisation history as an interactive HTML file (None for an untuned model)."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    fig = optuna.visualization.plot_optimization_history(study)
    fig.write_html(str(path), include_plotlyjs=True)
    return path
