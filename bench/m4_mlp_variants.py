"""The global MLP's variants on M4 hourly, scored like the pipeline: validation and test OWA,
alone and averaged half and half with nlinear (the config's ridge, fitted once). ``--refit`` fits
both on every value before the test window (the pipeline's ``split.refit``).

Splits, preprocessing and scoring are ``m4_nlinear_variants``' (the last 48 values test, the
144 before them validation; ``--stride`` thins the validation windows). Each variant is a list
of ``key=value`` mlp params over the defaults below, e.g.

    .venv/orchestrator/bin/python bench/m4_mlp_variants.py --hours 700 \\
        epochs=20,batch_size=256 epochs=20,batch_size=256,members=3
"""

from __future__ import annotations

import argparse
import re
import time

import yaml
from m4_nlinear_variants import HORIZON, REPO, TEST, VAL, load_panel, score

from pipelines.models.registry import build_model

BASE = {"lookback": 336, "window_scale": "seasonal", "season": 24, "scale_offset": 0.03}


class Half:
    """The mean of two fitted models' forecasts."""

    def __init__(self, a, b) -> None:
        self.a, self.b = a, b
        self.min_history = max(a.min_history, b.min_history)

    def predict(self, histories):
        return 0.5 * (self.a.predict(histories) + self.b.predict(histories))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="key=value[,key=value...] mlp params")
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--stride", type=int, default=1, help="every k-th validation window")
    parser.add_argument("--refit", action="store_true",
                        help="fit on train and validation (every value before the test); "
                             "validation scores are then in-sample")
    args = parser.parse_args()
    pre, ids, raw, scaled = load_panel(args.series, args.hours, "log")
    train = [scaled[u][: -TEST if args.refit else -(VAL + TEST)] for u in ids]
    config = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    nl = build_model("nlinear", HORIZON, **{**config["algorithms"]["nlinear"]["params"],
                                            "alpha": 100.0}).fit(train)
    print(f"nlinear (alpha 100): val OWA {score(nl, pre, raw, scaled, 'val', args.stride)[0]:.4f}"
          f" test OWA {score(nl, pre, raw, scaled, 'test')[0]:.4f}", flush=True)
    print(f"{'variant':<48}{'val OWA':>9}{'test OWA':>9}{'half val':>9}{'half test':>10}"
          f"{'CPU s':>7}{'wall s':>7}", flush=True)
    for variant in args.variants:
        params = {**BASE, **{k: yaml.safe_load(v) for k, v in  # lists: lookbacks=[168,336]
                             (kv.split("=") for kv in re.split(r",(?=\w+=)", variant))}}
        cpu, wall = time.process_time(), time.perf_counter()
        model = build_model("mlp", HORIZON, **params).fit(train)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        own = [score(m, pre, raw, scaled, part, args.stride)[0]
               for m in (model, Half(model, nl)) for part in ("val", "test")]
        print(f"{variant:<48}{own[0]:>9.4f}{own[1]:>9.4f}{own[2]:>9.4f}{own[3]:>10.4f}"
              f"{cpu:>7.0f}{wall:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
