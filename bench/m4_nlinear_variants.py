"""nlinear's variants on M4 hourly, scored like the pipeline: validation and test OWA.

Splits each series as ``configs/m4_hourly.yaml`` does (the last 48 values are the test, the
144 before them validation, every stride-1 window of 48 in it scored; the rest trains), fits
the preprocessor (``--transform``) and one ridge per variant on the training rows of every
series, and prints validation OWA (the pipeline's selection score) and test OWA, both against
Naive2 on the same windows with MASE scaled on the training rows. No tuning: each variant is
``lookback,window_scale,alpha[,scale_offset]``.

    .venv/orchestrator/bin/python bench/m4_nlinear_variants.py --hours 700 \\
        --transform log 336,seasonal,100 168,seasonal,100 336,none,0.42
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
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
HORIZON, SEASON, VAL, TEST = 48, 24, 144, 48


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="lookback,window_scale,alpha[,offset]")
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--transform", choices=["none", "log"], default="none")
    args = parser.parse_args()
    pre, ids, raw, scaled = load_panel(args.series, args.hours, args.transform)
    print(f"{'lookback':>9}{'window_scale':>14}{'alpha':>8}{'offset':>8}{'val OWA':>9}"
          f"{'test OWA':>9}"
          f"{'test sMAPE':>11}{'test MASE':>10}{'CPU s':>7}")
    for variant in args.variants:
        lookback, window_scale, alpha, offset = [*variant.split(","), "0"][:4]
        cpu = time.process_time()
        model = build_model("nlinear", HORIZON, lookback=int(lookback), alpha=float(alpha),
                            window_scale=window_scale, season=SEASON,
                            scale_offset=float(offset))
        model.fit([scaled[u][: -(VAL + TEST)] for u in ids])
        scores = {part: score(model, pre, raw, scaled, part) for part in ("val", "test")}
        print(f"{lookback:>9}{window_scale:>14}{alpha:>8}{offset:>8}{scores['val'][0]:>9.3f}"
              f"{scores['test'][0]:>9.3f}{scores['test'][1]:>11.3f}{scores['test'][2]:>10.3f}"
              f"{time.process_time() - cpu:>7.1f}")


def load_panel(series: int | None, hours: int | None, transform: str
               ) -> tuple[Preprocessor, list[str], dict, dict]:
    """M4 hourly (the first ``series``, each its last ``hours`` values), the preprocessor
    fitted on the training rows, the series ids, and the raw and scaled values by id."""
    data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
    if series:
        data = data[data["unique_id"].isin(data["unique_id"].unique()[:series])]
    if hours:
        data = data.groupby("unique_id", sort=False).tail(hours)
    data = data.assign(unique_id=data["unique_id"].astype(str)).reset_index(drop=True)
    train = data.groupby("unique_id", sort=False).head(-(VAL + TEST))
    pre = Preprocessor(PreprocessConfig(target_transform=transform)).fit(train)
    raw = {u: g["y"].to_numpy(float) for u, g in data.groupby("unique_id", sort=False)}
    scaled = {u: g["y"].to_numpy() for u, g in pre.transform(data).groupby("unique_id",
                                                                           sort=False)}
    print(f"{len(pre.series_ids)} series, {len(data)} rows; target_transform {transform}")
    return pre, pre.series_ids, raw, scaled


def score(model, pre: Preprocessor, raw: dict, scaled: dict, part: str, stride: int = 1
           ) -> tuple[float, float, float]:
    """(OWA, sMAPE, MASE) over every ``stride``-th window of ``part`` of every series (a
    per-series model forecasts each series with that series' own model)."""
    terms = []
    for uid, y in raw.items():
        n = len(y)
        origins = (np.arange(n - VAL - TEST, n - TEST - HORIZON + 1, stride) if part == "val"
                   else np.array([n - TEST]))
        windows = sliding_window_view(scaled[uid], model.min_history)[origins
                                                                        - model.min_history]
        own = model.model(uid) if isinstance(model, PerSeries) else model
        pred = pre.inverse_transform_target(own.predict(windows), [uid] * len(origins))
        actual = sliding_window_view(y, HORIZON)[origins]
        base = naive2.forecast(y, origins, HORIZON, SEASON)
        scale = evaluation.mase_scale(y[: -(VAL + TEST)], SEASON)
        terms.append([evaluation.smape(actual, pred), np.mean(np.abs(actual - pred)) / scale,
                      evaluation.smape(actual, base), np.mean(np.abs(actual - base)) / scale])
    sm, ms, n2_sm, n2_ms = np.mean(terms, axis=0)
    return naive2.owa(sm, ms, n2_sm, n2_ms), float(sm), float(ms)


if __name__ == "__main__":
    main()
