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

from m4_nlinear_variants import HORIZON, TEST, VAL, load_panel, score

from pipelines.models.per_series import PerSeries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="seasons:lookback:trend:damped")
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--transform", choices=["none", "log"], default="log")
    parser.add_argument("--val-stride", type=int, default=1, help="every k-th validation window")
    args = parser.parse_args()
    pre, ids, raw, scaled = load_panel(args.series, args.hours, args.transform)
    print(f"validation stride {args.val_stride}", flush=True)
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
        val = score(model, pre, raw, scaled, "val", args.val_stride)
        test = score(model, pre, raw, scaled, "test")
        print(f"{variant:>24}{val[0]:>9.3f}{test[0]:>9.3f}{test[1]:>11.3f}{test[2]:>10.3f}"
              f"{fit_cpu:>10.1f}{time.process_time() - cpu:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
