"""Ray as the engine (pipelines.engine), started locally in this process: on real M4 hourly
series, ARIMA fitted per series, the cross-validation folds of a trial, the global trees'
feature rows built in shards and the backtest windows of local models give the same results
on Ray as in process; a worker killed mid-task is replaced and its task run again; a task
whose worker dies on every try is named and the fan-out's other tasks stopped; a fit that
fails names its series; fan-outs inside a task stay in its process."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import engine
from pipelines.models.per_series import PerSeries

REPO = Path(__file__).resolve().parents[2]
HOURS = 240


@pytest.fixture(scope="module")
def series() -> tuple[list[str], list[np.ndarray]]:
    data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
    ids = [f"H{k}" for k in range(1, 7)]
    data = data[data["unique_id"].isin(ids)].groupby("unique_id", sort=False).tail(HOURS)
    return ids, [data.loc[data["unique_id"] == i, "y"].to_numpy(float) for i in ids]


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[None]:
    import ray

    before = os.environ.get(engine.ENGINE_ENV)
    os.environ[engine.ENGINE_ENV] = "ray"
    try:
        yield
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop(engine.ENGINE_ENV, None)
        else:
            os.environ[engine.ENGINE_ENV] = before


def _arima() -> PerSeries:
    return PerSeries(24, algorithm="arima", p=1, d=0, q=1, fit_window=200, maxiter=20)


def test_per_series_fits_on_ray_match_in_process(series, ray_engine, monkeypatch) -> None:
    ids, ys = series
    on_ray = _arima().fit(ys, ids=ids)
    import ray

    assert ray.is_initialized()
    windows = np.stack([y[-96:] for y in ys])
    got = on_ray.predict_intervals(windows, ids=ids)
    monkeypatch.setenv(engine.ENGINE_ENV, "local")
    expected = _arima().fit(ys, ids=ids).predict_intervals(windows, ids=ids)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def _dies_once(item: tuple[int, str], marker_dir: str) -> int:
    """Kills its own worker process the first time it sees item 2."""
    k, _ = item
    marker = Path(marker_dir) / f"seen-{k}"
    if k == 2 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    (Path(marker_dir) / f"done-{k}").write_text(str(os.getpid()))
    return k * k


def test_a_killed_worker_is_replaced_and_its_task_rerun(ray_engine, tmp_path: Path) -> None:
    items = [(k, f"H{k}") for k in range(5)]
    assert engine.fan_out(_dies_once, items, str(tmp_path)) == [0, 1, 4, 9, 16]
    killed = int((tmp_path / "seen-2").read_text())
    rerun = int((tmp_path / "done-2").read_text())
    assert killed != rerun  # the second try ran in a new worker process


def _dies_or_lingers(item: int, marker_dir: str) -> int:
    """Item 0 kills its worker on every try; item 1 runs for a minute unless cancelled."""
    if item == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    (Path(marker_dir) / "started").write_text(str(os.getpid()))
    time.sleep(60)
    (Path(marker_dir) / "finished").write_text("")
    return item


def test_a_task_whose_worker_dies_on_every_try_is_named_and_the_others_cancelled(
        ray_engine, tmp_path: Path) -> None:
    import psutil

    with pytest.raises(RuntimeError, match=(
            r"Ray task 1 of 2 \(tests\.unit\.test_engine\._dies_or_lingers\): its worker "
            r"process died on each of 4 tries")):
        engine.fan_out(_dies_or_lingers, [0, 1], str(tmp_path))
    if (tmp_path / "started").exists():  # item 1 was running: its worker is stopped
        lingering = int((tmp_path / "started").read_text())
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(lingering).wait(timeout=30)
    assert not (tmp_path / "finished").exists()


def test_a_failing_fit_names_its_series(series, ray_engine) -> None:
    ids, ys = series
    short = [*ys[:2], ys[2][:5]]  # H3 far too short for a seasonal ARIMA window
    with pytest.raises(ValueError, match="arima on series 'H3'"):
        PerSeries(24, algorithm="arima", p=1, d=0, q=1, s=24, D=1, fit_window=200,
                  maxiter=20).fit(short, ids=ids[:3])


def test_optuna_trials_fan_out_on_ray_into_the_shared_study(ray_engine, tmp_path: Path) -> None:
    """Each trial a Ray task on the study in the shared storage: all of them land there, the
    best is the best of them, and the true period's multiple wins on real-shaped data."""
    import optuna

    from pipelines.config import AlgorithmConfig, SearchParam, TuningConfig
    from pipelines.tuning import tune

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    y = np.sin(np.arange(600) * 2 * np.pi / 24) + np.random.default_rng(0).normal(0, 0.1, 600)
    algo = AlgorithmConfig(
        params={}, search_space={"season": SearchParam(type="int", low=12, high=48, step=12)}
    )
    cfg = TuningConfig(n_trials=4, cv_folds=2, seed=1)
    result = tune("seasonal_naive", algo, y, None, 12, cfg, storage, "ray-study", 1.0,
                  min_train=100)
    study = optuna.load_study(study_name="ray-study", storage=storage)
    assert result.n_trials == len(study.trials) == 4
    assert all(t.state.is_finished() for t in study.trials)  # complete, or pruned by the median
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert result.best_value == min(t.value for t in finished)
    assert result.best_params["season"] in (24, 48)


def _pid(item: int, offset: int) -> tuple[int, int]:
    return item + offset, os.getpid()


def _nested_pids(_item: int, _shared: None) -> tuple[int, list[int]]:
    return os.getpid(), [pid for _, pid in engine.fan_out(_pid, range(3), 0)]


def test_shards_run_as_tasks_and_fan_outs_inside_a_task_stay_in_it(ray_engine) -> None:
    done = engine.map_shards(_pid, range(50), 100)
    assert [value for value, _ in done] == list(range(100, 150))  # every item, in order
    assert os.getpid() not in {pid for _, pid in done}  # in Ray's workers
    for outer, inner in engine.fan_out(_nested_pids, range(2)):
        assert inner == [outer] * 3  # the task's own process, not tasks within tasks


def _folds(ys: list[np.ndarray]) -> list[list]:
    from pipelines.tuning import rolling_origin_folds

    return [rolling_origin_folds(len(y), 24, 2, 120, 6) for y in ys]


@pytest.mark.parametrize("algorithm, params", [
    ("seasonal_naive", {"season": 24}),  # local: per-series fits inside each fold's task
    ("xgboost", {"lookback": 48, "n_estimators": 10}),  # global: one fit per fold
])
def test_cv_folds_on_ray_score_as_in_process(series, ray_engine, monkeypatch, algorithm,
                                             params) -> None:
    from pipelines.evaluation import mase_scale
    from pipelines.tuning import cv_score

    ids, ys = series
    dss = [np.arange(len(y)).astype("datetime64[h]").astype("datetime64[ns]") for y in ys]
    dens = [mase_scale(y[:120], 24) for y in ys]
    reports: dict[str, list] = {"ray": [], "local": []}
    scores = {}
    for kind in ("ray", "local"):
        monkeypatch.setenv(engine.ENGINE_ENV, kind)
        scores[kind] = cv_score(algorithm, params, list(ys), dss, 24, _folds(ys), "mase", dens,
                                0, lambda k, v, kind=kind: reports[kind].append((k, v)), ids)
    assert scores["ray"] == pytest.approx(scores["local"], rel=1e-12)
    assert [k for k, _ in reports["ray"]] == [0, 1]  # each fold reported, in order
    assert [v for _, v in reports["ray"]] == pytest.approx([v for _, v in reports["local"]],
                                                           rel=1e-12)


def test_global_feature_rows_built_in_shards_on_ray_fit_the_same_model(series, ray_engine,
                                                                        monkeypatch) -> None:
    from pipelines.models.xgboost_model import XGBoostForecaster

    _, ys = series
    rng = np.random.default_rng(3)
    xh = [rng.normal(size=(len(y), 2)) for y in ys]  # with stale ages drawn per series
    windows = np.stack([y[-48:] for y in ys])
    hist = np.stack([x[-3:] for x in xh])
    preds = {}
    for kind in ("ray", "local"):
        monkeypatch.setenv(engine.ENGINE_ENV, kind)
        model = XGBoostForecaster(24, lookback=48, n_estimators=20, seed=5).fit(list(ys), xh=xh)
        preds[kind] = model.predict(windows, xh=hist)
    np.testing.assert_array_equal(preds["ray"], preds["local"])


def test_direct_tree_blocks_trained_as_ray_tasks_fit_the_same_model(series, ray_engine,
                                                                    monkeypatch) -> None:
    from pipelines.models.lightgbm_model import LightGBMForecaster

    _, ys = series
    windows = np.stack([y[-48:] for y in ys])
    preds = {}
    for kind in ("ray", "local"):
        monkeypatch.setenv(engine.ENGINE_ENV, kind)
        model = LightGBMForecaster(24, lookback=48, n_estimators=20, strategy="direct",
                                   direct_steps=3).fit(list(ys))
        assert len(model.boosters) == 3
        preds[kind] = model.predict(windows)
    np.testing.assert_array_equal(preds["ray"], preds["local"])


def test_backtest_windows_of_local_models_on_ray_match_in_process(series, ray_engine,
                                                                   monkeypatch) -> None:
    from pipelines import panel

    ids, ys = series
    model = _arima().fit([y[:180] for y in ys], ids=ids)
    origins = [np.arange(180, 217, 6) for _ in ys]
    on_ray = panel.forecast(model, list(ys), [None] * len(ys), origins, ids)
    monkeypatch.setenv(engine.ENGINE_ENV, "local")
    in_process = panel.forecast(model, list(ys), [None] * len(ys), origins, ids)
    for a, b in zip(on_ray, in_process, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
