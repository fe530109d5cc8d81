"""XGBoost reads its training rows a chunk of series at a time (``WindowChunks`` feeding a
``QuantileDMatrix``): on M4 hourly series the boosters are the ones a ``DMatrix`` of every row
gives (recursive with calendar columns and a cap; direct blocks with regressors), and the fit
never holds an array of every training row."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from pipelines.models import xgboost_model
from pipelines.models.xgboost_model import XGBoostForecaster

M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
HORIZON, LOOKBACK = 12, 48


@pytest.fixture(scope="module")
def m4() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """20 M4 hourly series (every value, standardised each) and their timestamps."""
    data = pd.read_parquet(M4)
    data = data[data["unique_id"].isin(data["unique_id"].unique()[:20])]
    ys, dss = [], []
    for _, group in data.groupby("unique_id", sort=False):
        y = group["y"].to_numpy(float)
        ys.append((y - y.mean()) / y.std())
        dss.append(group["ds"].to_numpy("datetime64[ns]"))
    return ys, dss


class _Inputs:
    """Wraps a model's ``_fit_rows`` to keep what each booster was fitted from."""

    def __init__(self, model: XGBoostForecaster) -> None:
        self.calls: list[tuple[Any, list[Any]]] = []
        fit_rows = model._fit_rows

        def record(fn: Any, work: list[Any], sizes: list[int]) -> Any:
            self.calls.append((fn, work))
            return fit_rows(fn, work, sizes)

        model._fit_rows = record

    def matrix_boosters(self, model: XGBoostForecaster) -> list[xgb.Booster]:
        """The boosters of the former path: one float32 ``DMatrix`` of every row each."""
        rounds = int(model.params["n_estimators"])
        boosters = []
        for fn, work in self.calls:
            features, target = model.chunk_rows(fn, work)
            data = xgb.DMatrix(features.astype(np.float32), label=target)
            boosters.append(xgb.train(model._booster_params(), data, num_boost_round=rounds))
        return boosters


def _raw(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw("ubj"))


def test_chunked_recursive_fit_is_the_booster_of_one_matrix(m4, monkeypatch) -> None:
    ys, dss = m4
    monkeypatch.setattr(xgboost_model, "CHUNK_SERIES", 3)  # seven chunks
    model = XGBoostForecaster(HORIZON, lookback=LOOKBACK, n_estimators=25, calendar=True,
                              max_train_windows=12_000)  # fmt: skip
    inputs = _Inputs(model)
    model.fit(ys, dss)
    assert model.calendar and len(inputs.calls) == 1
    (reference,) = inputs.matrix_boosters(model)
    assert _raw(model.booster) == _raw(reference)


def test_chunked_direct_fit_with_regressors_is_the_boosters_of_one_matrix(m4, monkeypatch
                                                                         ) -> None:  # fmt: skip
    ys, _ = m4
    monkeypatch.setattr(xgboost_model, "CHUNK_SERIES", 4)
    # historical: the next series' values (cut or repeated to length); future: the series'
    # own values 24 hours earlier
    xh = [np.resize(ys[(k + 1) % len(ys)], len(y))[:, None] for k, y in enumerate(ys)]
    xf = [np.concatenate([y[:24], y[:-24]])[:, None] for y in ys]
    model = XGBoostForecaster(HORIZON, lookback=LOOKBACK, n_estimators=10, strategy="direct",
                              direct_steps=3, max_train_windows=5000)  # fmt: skip
    inputs = _Inputs(model)
    model.fit(ys, xh=xh, xf=xf)
    assert model.exog_inputs == (1, 1) and len(inputs.calls) == 3
    references = inputs.matrix_boosters(model)
    assert [_raw(b) for b in model.boosters] == [_raw(b) for b in references]


def test_fit_never_holds_an_array_of_every_training_row(m4, monkeypatch) -> None:
    ys, dss = m4
    monkeypatch.setattr(xgboost_model, "CHUNK_SERIES", 1)
    model = XGBoostForecaster(HORIZON, lookback=168, n_estimators=5, calendar=True)
    rows = sum(len(y) - 168 for y in ys)
    tracemalloc.start()  # numpy's arrays are traced (XGBoost's own memory is not)
    model.fit(ys, dss)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_matrix = rows * model._width * 4  # the former path's float32 matrix alone: 8.3 MB
    assert peak < one_matrix / 2, f"fit peaked at {peak / 1e6:.1f} MB of arrays"
    windows = np.stack([y[-168:] for y in ys])
    forecast = model.predict(windows, np.array([t[-1] for t in dss]))
    assert forecast.shape == (20, HORIZON) and np.isfinite(forecast).all()
