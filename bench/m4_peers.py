"""The benchmarks' peers, run in their own environment (``bench/peers-setup.sh``): statsforecast's
AutoETS, AutoTheta, AutoARIMA, MSTL (seasons m and 7m) and SeasonalNaive, mlforecast's LightGBM
(its default config here, or ``lgbm168``: lags 1..168 and hour/day-of-week, 100 trees, one
thread, the booster settings of Tidemill's LightGBM) and an sklearn Ridge on lags 1..168
(Tidemill's nlinear analogue), each forecasting ``--horizon`` steps after the end of every
series in ``--input`` (long format: unique_id, ds, y). Writes the forecasts (long: unique_id,
ds, model, yhat) to ``--output`` and prints one JSON line of each model's wall and CPU seconds
(the mlforecast models also of their fit and predict apart). ``bench/m4_hourly.py --peers`` and
``bench/scale.py`` run this; the first scores the forecasts with Tidemill's own metrics.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

STATS = {"ets": "AutoETS", "theta": "AutoTheta", "arima": "AutoARIMA", "snaive": "SeasonalNaive",
         "mstl": "MSTL"}
MLF = ("lgbm", "lgbm168", "ridge168")
# the booster settings of Tidemill's LightGBM (pipelines/models/lightgbm_model.py), one thread
TIDEMILL_LGBM = {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 31,
                 "min_child_samples": 20, "colsample_bytree": 0.8, "subsample": 0.8,
                 "subsample_freq": 1, "reg_lambda": 1.0, "n_jobs": 1, "force_row_wise": True,
                 "deterministic": True, "verbosity": -1}


def _timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    started, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def _statsforecast(key: str, data: pd.DataFrame, h: int, m: int) -> tuple[pd.DataFrame, dict]:
    from statsforecast import StatsForecast
    from statsforecast import models as sf_models

    # MSTL: daily and weekly seasonality, its default trend forecaster (AutoETS, no season)
    seasons = [m, 7 * m] if key == "mstl" else m
    model = getattr(sf_models, STATS[key])(season_length=seasons)
    sf = StatsForecast(models=[model], freq="h", n_jobs=1)
    fc, timing = _timed(lambda: sf.forecast(df=data, h=h))
    name = f"statsforecast {model}"
    return fc.rename(columns={str(model): "yhat"}).assign(model=name), {name: timing}


def _mlforecast(key: str, data: pd.DataFrame, h: int) -> tuple[pd.DataFrame, dict]:
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.target_transforms import LocalStandardScaler
    from sklearn.linear_model import Ridge

    if key == "lgbm":  # the default config of the M4 runs (300 trees, LightGBM's threads)
        name, model = "mlforecast LightGBM", lgb.LGBMRegressor(n_estimators=300, verbosity=-1)
        lags, dates = [1, 2, 3, 24, 48, 168], ["hour", "dayofweek"]
    elif key == "lgbm168":
        name, model = "mlforecast LightGBM lags 1-168", lgb.LGBMRegressor(**TIDEMILL_LGBM)
        lags, dates = list(range(1, 169)), ["hour", "dayofweek"]
    else:
        name, model = "mlforecast Ridge lags 1-168", Ridge(alpha=1.0)
        lags, dates = list(range(1, 169)), []
    # per-series scaling as mlforecast's docs advise for panels of mixed scale (without it,
    # M4's 414 hourly series, 10 to 300,000 in level, gave a recursive OWA of 7.4)
    mlf = MLForecast(models={"m": model}, freq="h", lags=lags, date_features=dates,
                     target_transforms=[LocalStandardScaler()])
    _, fit = _timed(lambda: mlf.fit(data))
    fc, predict = _timed(lambda: mlf.predict(h))
    timing = {"wall_s": fit["wall_s"] + predict["wall_s"], "cpu_s": fit["cpu_s"] + predict["cpu_s"],
              "fit_wall_s": fit["wall_s"], "fit_cpu_s": fit["cpu_s"],
              "predict_wall_s": predict["wall_s"], "predict_cpu_s": predict["cpu_s"]}
    return fc.rename(columns={"m": "yhat"}).assign(model=name), {name: timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--season", type=int, default=24)
    parser.add_argument("--models", default=None,
                        help=f"comma-separated, of {', '.join([*STATS, *MLF])} "
                             "(default: ets, theta, lgbm, with --arima and --skip-ets)")
    parser.add_argument("--arima", action="store_true", help="also AutoARIMA (slow)")
    parser.add_argument("--skip-ets", action="store_true", help="leave AutoETS out")
    args = parser.parse_args()
    keys = args.models.split(",") if args.models else (
        ([] if args.skip_ets else ["ets"]) + ["theta"] + (["arima"] if args.arima else [])
        + ["lgbm"])
    unknown = sorted(set(keys) - {*STATS, *MLF})
    if unknown:
        parser.error(f"unknown --models {', '.join(unknown)}; known: {', '.join([*STATS, *MLF])}")
    data = pd.read_parquet(args.input)
    frames, timing = [], {}
    for key in keys:
        fc, spent = (_statsforecast(key, data, args.horizon, args.season) if key in STATS
                     else _mlforecast(key, data, args.horizon))
        frames.append(fc[["unique_id", "ds", "model", "yhat"]])
        timing.update(spent)
    pd.concat(frames, ignore_index=True).to_parquet(args.output, index=False)
    print(json.dumps(timing))


if __name__ == "__main__":
    main()
