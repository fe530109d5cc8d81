"""Tidemill's LightGBM fit and forecast alone, for the per-core comparison beside mlforecast's
(``bench/m4_peers.py --models lgbm168``): the global model of the scale run (lookback 168, 100
trees, one thread) with calendar features (hour and day-of-week of the predicted step, as
mlforecast's date features), fitted on every value of every series in ``--input`` (long format:
unique_id, ds, y), each series scaled to mean 0 and standard deviation 1 as the pipeline's
``scaler: standard`` and mlforecast's ``LocalStandardScaler`` do, then forecasting ``--horizon``
steps after the end of every series. Prints one JSON line: wall and CPU seconds of the fit and
of the forecast. ``bench/scale.py --fit-compare`` runs this.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from pipelines.models.lightgbm_model import LightGBMForecaster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--horizon", type=int, default=48)
    args = parser.parse_args()
    data = pd.read_parquet(args.input)
    groups = data.groupby("unique_id", sort=False)
    ys = [g.to_numpy(float) for _, g in groups["y"]]
    dss = [g.to_numpy("datetime64[ns]") for _, g in groups["ds"]]
    del data, groups
    scaled = [(v - v.mean()) / (v.std() or 1.0) for v in ys]
    model = LightGBMForecaster(args.horizon, lookback=168, n_estimators=100, calendar=True)
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(scaled, dss)
    fit_wall, fit_cpu = time.perf_counter() - started, time.process_time() - cpu
    histories = np.stack([v[-168:] for v in scaled])
    started, cpu = time.perf_counter(), time.process_time()
    model.predict(histories, np.array([t[-1] for t in dss]))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    timing = {"wall_s": fit_wall + wall, "cpu_s": fit_cpu + cpu, "fit_wall_s": fit_wall,
              "fit_cpu_s": fit_cpu, "predict_wall_s": wall, "predict_cpu_s": cpu}
    print(json.dumps({"tidemill LightGBM lookback 168": timing}))


if __name__ == "__main__":
    main()
