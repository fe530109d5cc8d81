"""Ray as the engine of per-series fits (pipelines.engine), started locally in this process:
ARIMA fitted per series on real M4 hourly series gives the same forecasts on Ray as in
process; a worker killed mid-task is replaced and its task run again; a fit that fails
names its series."""

from __future__ import annotations

import os
import signal
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


def test_a_failing_fit_names_its_series(series, ray_engine) -> None:
    ids, ys = series
    short = [*ys[:2], ys[2][:5]]  # H3 far too short for a seasonal ARIMA window
    with pytest.raises(ValueError, match="arima on series 'H3'"):
        PerSeries(24, algorithm="arima", p=1, d=0, q=1, s=24, D=1, fit_window=200,
                  maxiter=20).fit(short, ids=ids[:3])
