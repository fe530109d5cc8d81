"""ETTh1 with and without regressors (issue 14): each model that uses them, fitted twice on the
published split, the same code path as training (``pipelines.panel``).

Regressors: the six load columns (HUFL, HULL, MUFL, MULL, LUFL, LULL) historical, hour of day
and day of week as calendar (future) terms: ``configs/etth1_exog.yaml``'s declaration. Rows
[0, 8640) train, [8640, 11520) validation (unused: fixed hyper-parameters), [11520, 14400)
test; every column scaled with its training mean and std; MSE/MAE of OT on scaled values over
every stride-1 test window.

    .venv/orchestrator/bin/python bench/etth1_exogenous.py --write-results
    .venv/orchestrator/bin/python bench/etth1_exogenous.py --horizons 24 --algorithms nlinear
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipelines import panel
from pipelines.config import load_config
from pipelines.data import load_raw, validate
from pipelines.exogenous import ExogSpec, future_matrix
from pipelines.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Training: ETTh1 with regressors (issue 14)"
TRAIN_END, TEST_START, TEST_END = 8640, 11520, 14400
PARAMS = {
    "nlinear": {"lookback": 336, "alpha": 1000.0, "exog_lags": 24},
    "xgboost": {"lookback": 168, "n_estimators": 200, "exog_lags": 3},
    "lightgbm": {"lookback": 168, "n_estimators": 200, "exog_lags": 3},
    "lstm": {"lookback": 96, "units": 32, "epochs": 5, "batch_size": 256},  # configs/etth1.yaml
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", default=",".join(PARAMS))
    parser.add_argument("--horizons", default="24,96")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    cfg = load_config(REPO / "configs" / "etth1_exog.yaml")
    frame = validate(load_raw(cfg.data), cfg.data, min_rows=TEST_END)
    pre = Preprocessor(cfg.preprocess).fit(frame.iloc[:TRAIN_END])
    scaled = pre.transform(frame)
    spec = ExogSpec.from_config(cfg.data)
    ds = frame["ds"].to_numpy()
    y = scaled["y"].to_numpy()
    xh = scaled[list(spec.historical)].to_numpy()
    xf = future_matrix(spec, None, ds)
    load = os.getloadavg()
    started = time.perf_counter()
    rows = []
    for horizon in map(int, args.horizons.split(",")):
        origins = np.arange(TEST_START, TEST_END - horizon + 1)
        actual = sliding_window_view(y, horizon)[origins]
        for algorithm in args.algorithms.split(","):
            mses = {}
            for label, regs in (("without", (None, None)), ("with", ([xh], [xf]))):
                t0 = time.perf_counter()
                model = panel.fit(algorithm, horizon, {"seed": 0, **PARAMS[algorithm]},
                                  [y[:TRAIN_END]], [ds[:TRAIN_END]], ["ETTh1"],
                                  *(None if r is None else [r[0][:TRAIN_END]] for r in regs))
                fit_s = time.perf_counter() - t0
                pred = panel.forecast(model, [y], [ds], [origins], ["ETTh1"], *regs)[0]
                err = pred - actual
                mses[label] = float(np.mean(err**2))
                rows.append((algorithm, horizon, label, mses[label], float(np.abs(err).mean()),
                             fit_s, time.perf_counter() - t0 - fit_s))
                print(f"[bench] {algorithm} h={horizon} {label} regressors: MSE {mses[label]:.4f}"
                      f" MAE {rows[-1][4]:.4f} (fit {fit_s:.1f}s)", flush=True)
            rows[-1] += (mses["with"] / mses["without"],)
    table = ["| algorithm | horizon | regressors | MSE | MAE | MSE with / without | fit s | "
             "forecast s |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ratio = f"{row[7]:.3f}" if len(row) > 7 else ""
        table.append(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]:.4f} | {row[4]:.4f} | {ratio} "
                     f"| {row[5]:.1f} | {row[6]:.1f} |")
    end = os.getloadavg()
    text = "\n".join([
        SECTION, "",
        f"Command: `.venv/orchestrator/bin/python bench/etth1_exogenous.py "
        f"{shlex.join(sys.argv[1:])}`", "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. 2 shared cores; load "
        f"average at start {load[0]:.2f}, at end {end[0]:.2f}. Wall "
        f"{time.perf_counter() - started:.0f} s.", "",
        "Protocol: the ETTh1 split of the section above (train [0, 8640), test [11520, 14400),"
        " every stride-1 test window, scaled values); regressors as in "
        "`configs/etth1_exog.yaml` (six load columns historical, hour of day and day of week "
        "calendar); fixed hyper-parameters " + str(PARAMS) + ", seed 0.", "",
        *table, "",
    ])
    print(text)
    if args.write_results:
        current = RESULTS.read_text()
        if SECTION in current:
            head, _, rest = current.partition(SECTION)
            after = rest.find("\n## ")
            current = head + text + ("" if after < 0 else rest[after:])
        else:
            current = current.rstrip("\n") + "\n\n" + text
        RESULTS.write_text(current)


if __name__ == "__main__":
    main()
