"""The M4 benchmark's peers, run in their own environment (``bench/peers-setup.sh``):
statsforecast's AutoETS and AutoTheta (and, with ``--arima``, AutoARIMA) and mlforecast's
LightGBM on lags and calendar features, each forecasting ``--horizon`` steps after the end of
every series in ``--input`` (long format: unique_id, ds, y). Writes the forecasts (long:
unique_id, ds, model, yhat) to ``--output`` and prints one JSON line of each model's wall and
CPU seconds. ``bench/m4_hourly.py --peers`` runs this and scores the forecasts with Tidemill's
own metrics.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd


def _timed(fn):
    started, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--season", type=int, default=24)
    parser.add_argument("--arima", action="store_true", help="also AutoARIMA (slow)")
    parser.add_argument("--skip-ets", action="store_true", help="leave AutoETS out")
    args = parser.parse_args()
    data = pd.read_parquet(args.input)
    h, m = args.horizon, args.season
    frames, timing = [], {}

    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    models = ([] if args.skip_ets else [AutoETS(season_length=m)]) + [AutoTheta(season_length=m)]
    if args.arima:
        models.append(AutoARIMA(season_length=m))
    for model in models:
        sf = StatsForecast(models=[model], freq="h", n_jobs=1)
        fc, timing[f"statsforecast {model}"] = _timed(lambda sf=sf: sf.forecast(df=data, h=h))
        frames.append(fc.rename(columns={str(model): "yhat"}).assign(
            model=f"statsforecast {model}")[["unique_id", "ds", "model", "yhat"]])

    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.target_transforms import LocalStandardScaler

    # per-series scaling as mlforecast's docs advise for panels of mixed scale (without it,
    # M4's 414 hourly series, 10 to 300,000 in level, gave a recursive OWA of 7.4)
    mlf = MLForecast(models={"LightGBM": lgb.LGBMRegressor(n_estimators=300, verbosity=-1)},
                     freq="h", lags=[1, 2, 3, 24, 48, 168], date_features=["hour", "dayofweek"],
                     target_transforms=[LocalStandardScaler()])
    fc, timing["mlforecast LightGBM"] = _timed(lambda: mlf.fit(data).predict(h))
    frames.append(fc.rename(columns={"LightGBM": "yhat"}).assign(
        model="mlforecast LightGBM")[["unique_id", "ds", "model", "yhat"]])
    pd.concat(frames, ignore_index=True).to_parquet(args.output, index=False)
    print(json.dumps(timing))


if __name__ == "__main__":
    main()
