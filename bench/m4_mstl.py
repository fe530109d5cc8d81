"""MSTL per series on M4 hourly, scored like the pipeline: validation and test OWA, CPU s.

Splits, preprocessing and scoring as ``bench/m4_nlinear_variants.py`` (the last 48 values are
the test, the 144 before them validation, the rest trains; OWA against Naive2 on the same
windows), without the pipeline's tuning and conformal calibration. Validation scores every
``--val-stride``-th window of 48 (1 = the pipeline's 97 per series; MSTL decomposes each
window, ~70 ms on one core). Each variant is ``seasons:lookback:trend:damped``.

    .venv/orchestrator/bin/python bench/m4_mstl.py --hours 700 --transform log \\
        --val-stride 24 24-168:400:add:true 24:400:add:true
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import evaluation, naive2
from pipelines.config import PreprocessConfig
from pipelines.models.per_series import PerSeries
from pipelines.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
HORIZON, SEASON, VAL, TEST = 48, 24, 144, 48


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="seasons:lookback:trend:damped")
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--transform", choices=["none", "log"], default="log")
    parser.add_argument("--val-stride", type=int, default=1, help="every k-th validation window")
    args = parser.parse_args()
    data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
    if args.series:
        data = data[data["unique_id"].isin(data["unique_id"].unique()[: args.series])]
    if args.hours:
        data = data.groupby("unique_id", sort=False).tail(args.hours)
    data = data.assign(unique_id=data["unique_id"].astype(str)).reset_index(drop=True)
    train = data.groupby("unique_id", sort=False).head(-(VAL + TEST))
    pre = Preprocessor(PreprocessConfig(target_transform=args.transform)).fit(train)
    ids = pre.series_ids
    raw = {u: g["y"].to_numpy(float) for u, g in data.groupby("unique_id", sort=False)}
    scaled = {u: g["y"].to_numpy() for u, g in pre.transform(data).groupby("unique_id",
                                                                           sort=False)}
    print(f"{len(ids)} series, {len(data)} rows; target_transform {args.transform}; "
          f"validation stride {args.val_stride}", flush=True)
    print(f"{'variant':>24}{'val OWA':>9}{'test OWA':>9}{'test sMAPE':>11}{'test MASE':>10}"
          f"{'fit CPU s':>10}{'val+test CPU s':>15}", flush=True)
    for variant in args.variants:
        seasons, lookback, trend, damped = variant.split(":")
        cpu = time.process_time()
        model = PerSeries(HORIZON, algorithm="mstl", lookback=int(lookback), trend=trend,
                          damped=damped == "true",
                          seasons=[int(s) for s in seasons.split("-")])
        model.fit([scaled[u][: -(VAL + TEST)] for u in ids], ids=ids)
        fit_cpu, cpu = time.process_time() - cpu, time.process_time()
        val = _score(model, pre, raw, scaled, "val", args.val_stride)
        test = _score(model, pre, raw, scaled, "test", 1)
        print(f"{variant:>24}{val[0]:>9.3f}{test[0]:>9.3f}{test[1]:>11.3f}{test[2]:>10.3f}"
              f"{fit_cpu:>10.1f}{time.process_time() - cpu:>15.1f}", flush=True)


def _score(model: PerSeries, pre: Preprocessor, raw: dict, scaled: dict, part: str,
           stride: int) -> tuple[float, float, float]:  # fmt: skip
    """(OWA, sMAPE, MASE) over the windows of ``part`` of every series."""
    terms = []
    for uid, y in raw.items():
        n = len(y)
        origins = (np.arange(n - VAL - TEST, n - TEST - HORIZON + 1, stride) if part == "val"
                   else np.array([n - TEST]))
        windows = sliding_window_view(scaled[uid], model.min_history)[origins
                                                                        - model.min_history]
        point = model.model(uid).predict(windows)
        pred = pre.inverse_transform_target(point, [uid] * len(origins))
        actual = sliding_window_view(y, HORIZON)[origins]
        base = naive2.forecast(y, origins, HORIZON, SEASON)
        scale = evaluation.mase_scale(y[: -(VAL + TEST)], SEASON)
        terms.append([evaluation.smape(actual, pred), np.mean(np.abs(actual - pred)) / scale,
                      evaluation.smape(actual, base), np.mean(np.abs(actual - base)) / scale])
    sm, ms, n2_sm, n2_ms = np.mean(terms, axis=0)
    return naive2.owa(sm, ms, n2_sm, n2_ms), float(sm), float(ms)


if __name__ == "__main__":
    main()
