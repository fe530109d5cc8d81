"""LightGBM's and XGBoost's variants on M4 hourly, scored like ``m4_nlinear_variants.py``:
validation OWA (every stride-1 window of 48 in the 144 validation rows) and test OWA, against
Naive2, with MASE scaled on the training rows; no tuning, no ARIMA. Each variant is
``model,strategy,direct_steps,lookback,window_scale,n_estimators[,scale_offset]``
(``direct_steps`` 0: one booster per step; ignored by ``recursive``).

    nice -n 10 .venv/orchestrator/bin/python bench/m4_tree_variants.py --transform log \\
        lightgbm,recursive,0,168,seasonal,200,0.03 lightgbm,direct,8,168,seasonal,200,0.03
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from m4_nlinear_variants import HORIZON, SEASON, TEST, VAL, load_panel, score

from pipelines.models.registry import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+",
                        help="model,strategy,direct_steps,lookback,window_scale,n_estimators"
                             "[,scale_offset]")
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--transform", choices=["none", "log"], default="none")
    args = parser.parse_args()
    pre, ids, raw, scaled = load_panel(args.series, args.hours, args.transform)
    print(f"{'model':>9}{'strategy':>10}{'steps':>6}{'lookback':>9}{'scale':>9}{'offset':>7}"
          f"{'rounds':>7}{'val OWA':>8}{'test OWA':>9}{'sMAPE':>7}{'MASE':>6}{'CPU s':>7}"
          f"{'wall s':>7}{'RSS MiB':>8}{'load':>6}", flush=True)
    for variant in args.variants:
        name, strategy, steps, lookback, window_scale, rounds, offset = \
            [*variant.split(","), "0"][:7]
        cpu, wall = time.process_time(), time.perf_counter()
        model = build_model(name, HORIZON, strategy=strategy, direct_steps=int(steps) or None,
                            lookback=int(lookback), window_scale=window_scale, season=SEASON,
                            scale_offset=float(offset), n_estimators=int(rounds))
        model.fit([scaled[u][: -(VAL + TEST)] for u in ids])
        val, test = (score(model, pre, raw, scaled, part) for part in ("val", "test"))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:>9}{strategy:>10}{steps:>6}{lookback:>9}{window_scale:>9}{offset:>7}"
              f"{rounds:>7}{val[0]:>8.3f}{test[0]:>9.3f}{test[1]:>7.2f}{test[2]:>6.3f}"
              f"{time.process_time() - cpu:>7.0f}{time.perf_counter() - wall:>7.0f}"
              f"{rss:>8.0f}{os.getloadavg()[0]:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
