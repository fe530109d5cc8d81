"""The MLflow pyfunc flavour of a forecast bundle.

``mlflow.pyfunc.load_model("models:/<name>@champion").predict(df, params={"horizon": 24})``
takes a history frame with columns ``ds`` and ``y`` (and optionally ``unique_id``: one
forecast per id, each from its own history) and returns one row per id and step with
``unique_id, ds, step, yhat, yhat_lower, yhat_upper``.

A model trained with regressors (``bundle.json``'s ``exogenous``) takes them as columns of
the same frame: historical regressors beside each history row, future regressors on rows
after the history whose ``y`` is empty (at least ``horizon`` of them per series).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from pipelines.bundle import ForecastBundle, ForecastInputError

# Libraries each algorithm needs at load time, besides the common ones.
_ALGORITHM_REQUIREMENTS = {
    "xgboost": ["xgboost-cpu"],
    "lightgbm": ["xgboost-cpu", "lightgbm"],
    "arima": ["statsmodels"],
    "lstm": ["tensorflow-cpu"],
}
_COMMON_REQUIREMENTS = ["mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml"]


def pip_requirements(algorithm: str) -> list[str]:
    """Pinned requirements (the versions of the locks, shared by both environments)."""
    names = _COMMON_REQUIREMENTS + _ALGORITHM_REQUIREMENTS.get(algorithm, [])
    return [f"{n}=={version(n)}" for n in names]


class TidemillForecaster(mlflow.pyfunc.PythonModel):
    """Forecast from history frames with the bundle logged under artifact key ``bundle``."""

    def load_context(self, context: Any) -> None:
        self.bundle = ForecastBundle.load(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon") or self.bundle.horizon)
        return forecast_frame(self.bundle, model_input, horizon)


def forecast_frame(bundle: ForecastBundle, history: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Forecast every series in a long history frame (``unique_id`` optional)."""
    for column in ("ds", "y"):
        if column not in history.columns:
            raise ForecastInputError(column, "column is missing from the history frame")
    if "unique_id" not in history.columns:
        if len(bundle.series_ids) > 1:
            raise ForecastInputError(
                "unique_id",
                f"column is required: this model forecasts {len(bundle.series_ids)} series",
            )
        history = history.assign(unique_id=bundle.meta.get("series_id") or "series")
    elif history["unique_id"].isna().any():  # groupby would drop those rows silently
        rows = np.flatnonzero(history["unique_id"].isna().to_numpy())
        raise ForecastInputError("unique_id", f"missing at row(s) {rows[:5].tolist()}")
    spec = bundle.exogenous
    frames = []
    for uid, group in history.groupby("unique_id", sort=False):
        ds = pd.to_datetime(group["ds"]).to_numpy()
        if len(ds) > 1 and not (np.diff(ds) > np.timedelta64(0)).all():
            raise ForecastInputError("ds", f"timestamps of series {uid!r} are not increasing")
        y = group["y"].to_numpy(float)
        n_hist = len(y)
        if spec.future:  # the rows after the last target value carry the future regressors
            known = np.flatnonzero(~np.isnan(y))
            n_hist = int(known[-1]) + 1 if known.size else 0
        exog, future = {}, {}
        for column in (*spec.historical, *spec.future):
            if column not in group.columns:
                raise ForecastInputError(
                    column, f"series {uid!r}: regressor column {column!r} is missing from the "
                    "frame"
                )
            values = group[column].to_numpy(float)
            if column in spec.historical:
                exog[column] = values[None, :n_hist]
            else:
                future[column] = values[None, n_hist:]
        fc = bundle.forecast(y[:n_hist], ds[n_hist - 1 : n_hist], horizon, [str(uid)],
                             exog, future)
        frames.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": fc.ds[0],
                    "step": np.arange(1, horizon + 1),
                    "yhat": fc.yhat[0],
                    "yhat_lower": fc.lower[0],
                    "yhat_upper": fc.upper[0],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
