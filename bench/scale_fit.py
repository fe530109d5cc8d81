"""Tidemill's LightGBM (or, with ``--model xgboost``, XGBoost) fit and forecast alone, for the
per-core comparison beside mlforecast's (``bench/m4_peers.py --models lgbm168``) and the fit's
peak memory: the global model of the scale run (lookback 168, 100 trees; LightGBM one thread,
XGBoost its two) with calendar features (hour and day-of-week of the predicted step, as
mlforecast's date features), fitted on every value of every series in ``--input`` (long format:
unique_id, ds, y), each series scaled to mean 0 and standard deviation 1 as the pipeline's
``scaler: standard`` and mlforecast's ``LocalStandardScaler`` do, then forecasting ``--horizon``
steps after the end of every series. Prints one JSON line: wall and CPU seconds of the fit and
of the forecast, and the peak RSS before the fit (the data loaded and scaled).
``bench/scale.py --fit-compare`` runs this and adds the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import pandas as pd

from pipelines.models.lightgbm_model import LightGBMForecaster
from pipelines.models.xgboost_model import XGBoostForecaster

MODELS = {"lightgbm": (LightGBMForecaster, "LightGBM"),
          "xgboost": (XGBoostForecaster, "XGBoost")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--model", choices=sorted(MODELS), default="lightgbm")
    args = parser.parse_args()
    data = pd.read_parquet(args.input)
    groups = data.groupby("unique_id", sort=False)
    ys = [g.to_numpy(float) for _, g in groups["y"]]
    dss = [g.to_numpy("datetime64[ns]") for _, g in groups["ds"]]
    del data, groups
    scaled = [(v - v.mean()) / (v.std() or 1.0) for v in ys]
    forecaster, label = MODELS[args.model]
    model = forecaster(args.horizon, lookback=168, n_estimators=100, calendar=True)
    loaded_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(scaled, dss)
    fit_wall, fit_cpu = time.perf_counter() - started, time.process_time() - cpu
    histories = np.stack([v[-168:] for v in scaled])
    started, cpu = time.perf_counter(), time.process_time()
    model.predict(histories, np.array([t[-1] for t in dss]))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    timing = {"wall_s": fit_wall + wall, "cpu_s": fit_cpu + cpu, "fit_wall_s": fit_wall,
              "fit_cpu_s": fit_cpu, "predict_wall_s": wall, "predict_cpu_s": cpu,
              "peak_rss_before_fit_mib": loaded_mib}
    print(json.dumps({f"tidemill {label} lookback 168": timing}))


if __name__ == "__main__":
    main()
