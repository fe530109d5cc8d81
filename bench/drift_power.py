"""Detection power, false alarms and cost of the drift check (``monitoring.drift``) on ETTh1.

Power protocol: ETTh1 in long format (``y`` = OT plus the six load columns). Each current
window is ``--window`` hourly rows; its reference is the history before it, which the check
trims to the configured ``reference_rows`` (default 2160 = 90 days), as it does with the
champion's training snapshot. Windows start every ``--stride`` rows. Scenarios per window:
unshifted; every column shifted by 0.5, 1 and 2 reference standard deviations; every column's
standard deviation doubled around the window mean (variance x4). A window counts as detected
when ``check_drift`` decides drift (data drift only: no predictions are passed).

Cost: one ``run_drift_check`` (Evidently reports, HTML/JSON files, MLflow SQLite run,
Evidently workspace, Prometheus textfile) on ``--rows`` x ``--cols`` synthetic reference and
current frames plus as many logged predictions with actuals, with ``reference_rows=None``.

Usage: .venv/orchestrator/bin/python bench/drift_power.py [--stride 336] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.drift import DriftConfig, check_drift

ROOT = Path(__file__).resolve().parents[1]
LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
SCENARIOS = ["unshifted", "shift 0.5 sd", "shift 1 sd", "shift 2 sd", "sd x2"]


def etth1_long(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    return pd.DataFrame(
        {"unique_id": "ETTh1", "ds": pd.to_datetime(raw["date"]), "y": raw["OT"]}
        | {c: raw[c].astype(float) for c in LOADS}
    )


def perturb(current: pd.DataFrame, reference: pd.DataFrame, scenario: str) -> pd.DataFrame:
    out = current.copy()
    cols = ["y", *LOADS]
    if scenario.startswith("shift"):
        k = float(scenario.split()[1])
        out[cols] = out[cols] + k * reference[cols].std()
    elif scenario == "sd x2":
        out[cols] = out[cols].mean() + 2.0 * (out[cols] - out[cols].mean())
    return out


def one_window(args: tuple[pd.DataFrame, int, int, int]) -> dict[str, bool]:
    frame, start, window, reference_rows = args
    warnings.simplefilter("ignore")
    config = DriftConfig(reference_rows=reference_rows)
    history = frame.iloc[:start]
    recent = history.tail(reference_rows)
    current = frame.iloc[start : start + window]
    return {
        s: check_drift(history, perturb(current, recent, s), config=config).detected
        for s in SCENARIOS
    }


def power(args: argparse.Namespace) -> dict[str, object]:
    frame = etth1_long(args.data)
    starts = range(args.reference_rows, len(frame) - args.window + 1, args.stride)
    jobs = [(frame, s, args.window, args.reference_rows) for s in starts]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(one_window, jobs))
    rates = {s: float(np.mean([r[s] for r in results])) for s in SCENARIOS}
    return {"windows": len(results), "rates": rates, "seconds": time.perf_counter() - t0}


def timing(args: argparse.Namespace) -> dict[str, float]:
    from monitoring.drift_check import run_drift_check
    from pipelines.home import TidemillHome

    rng = np.random.default_rng(0)
    cols = ["y", *(f"x{i}" for i in range(args.cols - 1))]
    ds = pd.date_range("2020-01-01", periods=args.rows, freq="h")

    def frame(shift: float) -> pd.DataFrame:
        values = rng.normal(loc=shift, size=(args.rows, len(cols)))
        return pd.DataFrame({"unique_id": "s", "ds": ds} | dict(zip(cols, values.T, strict=True)))

    reference, current = frame(0.0), frame(0.1)
    yhat = current["y"].to_numpy() + rng.normal(scale=0.5, size=args.rows)
    predictions = pd.DataFrame(
        {"ds": ds, "yhat": yhat, "yhat_lower": yhat - 0.8, "yhat_upper": yhat + 0.8}
        | {"y": current["y"], "variant": "champion"}
    )
    config = DriftConfig(reference_rows=None)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        home = TidemillHome.resolve(tmp)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run_drift_check(
                reference, current, predictions, home=home, model="bench", version="1",
                champion_val_mae=0.4, config=config,
            )  # fmt: skip
            seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        check_drift(reference, current, predictions, champion_val_mae=0.4, config=config)
        evidently_only = time.perf_counter() - t0
    return {
        "rows": args.rows,
        "cols": len(cols),
        "end_to_end_seconds": seconds,
        "check_drift_seconds": evidently_only,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "ETTh1.csv")
    parser.add_argument("--window", type=int, default=168)
    parser.add_argument("--stride", type=int, default=336)
    parser.add_argument("--reference-rows", type=int, default=2160)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-power", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    out: dict[str, object] = {}
    if not args.skip_power:
        out["power"] = power(args)
    if not args.skip_timing:
        out["timing"] = timing(args)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
