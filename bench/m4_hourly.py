"""M4 hourly through Tidemill's own pipeline: test sMAPE, MASE and OWA per algorithm, and time.

Runs ``pipelines.workflow.run_pipeline`` (ingest -> preprocess -> tune -> train -> register,
a real MLflow store in a temporary home) on ``configs/m4_hourly.yaml``, optionally on the first
``--series`` series cut to their last ``--hours`` values (a slice; the full data is the M4
protocol: the last 48 values of each series are its test set). OWA is against Naive2 on the
same windows (``pipelines.naive2``). The config's ensemble candidate (mean of the 3 best on
validation; ``--combine median`` for the median) is a row like the others. The statsforecast /
mlforecast peers are not run here yet.

    .venv/orchestrator/bin/python bench/m4_hourly.py --series 20 --hours 500 \\
        --algorithms seasonal_naive,nlinear,lightgbm --trials 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from pipelines.home import TidemillHome
from pipelines.workflow import run_pipeline

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--algorithms", default=None, help="comma-separated subset")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--combine", choices=["mean", "median"], default=None,
                        help="the ensemble's combination (default as configured)")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    if args.combine:
        config["ensemble"]["combine"] = args.combine
    with tempfile.TemporaryDirectory(prefix="tidemill-m4-") as tmp:
        data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
        if args.series:
            data = data[data["unique_id"].isin(data["unique_id"].unique()[: args.series])]
        if args.hours:
            data = data.groupby("unique_id", sort=False).tail(args.hours)
        data.to_parquet(Path(tmp) / "m4.parquet", index=False)
        config["data"]["source"]["path"] = str(Path(tmp) / "m4.parquet")
        (Path(tmp) / "m4.yaml").write_text(yaml.safe_dump(config))
        started, cpu = time.perf_counter(), time.process_time()
        result = run_pipeline(
            Path(tmp) / "m4.yaml",
            TidemillHome.resolve(Path(tmp) / "home"),
            run_key="bench",
            algorithms=args.algorithms.split(",") if args.algorithms else None,
            n_trials=args.trials,
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"\n{data['unique_id'].nunique()} series, {len(data)} rows; wall {wall:.0f} s, "
          f"CPU {cpu:.0f} s, peak RSS {peak} MiB")
    print(f"{'algorithm':<16}{'sMAPE':>8}{'MASE':>8}{'OWA':>8}{'cover':>7}{'val MASE':>10}"
          "   (test; Naive2 sMAPE / MASE)")
    for cand in result["candidates"]:
        t = cand["test"]
        print(f"{cand['algorithm']:<16}{t['smape']:>8.3f}{t['mase']:>8.3f}{t['owa']:>8.3f}"
              f"{t.get('coverage', float('nan')):>7.2f}{cand['val']['mase']:>10.3f}   "
              f"({t['naive2_smape']:.3f} / {t['naive2_mase']:.3f})")
    print(f"selected: {result['registered']['algorithm']}")


if __name__ == "__main__":
    main()
