"""M4 hourly through Tidemill's own pipeline: test sMAPE, MASE and OWA per algorithm, and time.

Runs ``pipelines.workflow.run_pipeline`` (ingest -> preprocess -> tune -> train -> register,
a real MLflow store in a temporary home) on ``configs/m4_hourly.yaml``, optionally on the first
``--series`` series cut to their last ``--hours`` values (a slice; the full data is the M4
protocol: the last 48 values of each series are its test set). OWA is against Naive2 on the
same windows (``pipelines.naive2``). The config's ensemble candidate (of the 3 best on
validation, weights chosen by greedy selection on validation; ``--combine mean`` or ``median``
for the plain mean or median) is a row like the others. The ``selection`` column is what
selection ranks: for the weighted ensemble its cross-fitted validation score, where
``val OWA`` is its in-sample one.

``--strategy direct`` (``--direct-steps N``) fits the tree models one booster per horizon
step (per block of steps) instead of the configured recursive roll-out.

``--set path=value`` overrides one config field (YAML value), e.g. ``--set
split.val_size=48 --set selection.metric=mase --combine mean`` (the earlier single window and
metric; a weighted ensemble needs two windows per series);
``--drop path`` removes one (e.g. ``algorithms.nlinear.search_space.lookback``).

``--peers`` also runs statsforecast (AutoETS, AutoTheta; AutoARIMA with ``--arima``; others,
e.g. MSTL, with ``--peer-models``; ``--peers-only`` skips Tidemill's pipeline) and
mlforecast (LightGBM) on the same series in their own environment (``bench/peers-setup.sh``,
``bench/m4_peers.py``), each forecasting the last 48 values of every series from all before
them (the M4 protocol), scored here with the same sMAPE, MASE (season 24) and Naive2 as ours.

    .venv/orchestrator/bin/python bench/m4_hourly.py --series 20 --hours 500 \\
        --algorithms seasonal_naive,nlinear,lightgbm --trials 2 --peers
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipelines import evaluation, naive2
from pipelines.home import TidemillHome
from pipelines.workflow import run_pipeline

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=None, help="first N series (default all)")
    parser.add_argument("--hours", type=int, default=None, help="last N values of each series")
    parser.add_argument("--algorithms", default=None, help="comma-separated subset")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--combine", choices=["mean", "median", "weighted"],
                        default=None,
                        help="the ensemble's combination (default as configured)")
    parser.add_argument("--strategy", choices=["recursive", "direct"], default=None,
                        help="the tree models' multi-step strategy (default as configured)")
    parser.add_argument("--direct-steps", type=int, default=None,
                        help="with --strategy direct: boosters per model (default: horizon)")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override a config field, e.g. split.val_size=48 (repeatable)")
    parser.add_argument("--drop", action="append", default=[], metavar="PATH",
                        help="remove a config field (repeatable)")
    parser.add_argument("--peers", action="store_true",
                        help="also statsforecast and mlforecast on the same series")
    parser.add_argument("--arima", action="store_true", help="with --peers: AutoARIMA too")
    parser.add_argument("--peer-models", default=None,
                        help="with --peers: bench/m4_peers.py --models (e.g. mstl,ets,theta,lgbm)")
    parser.add_argument("--peers-only", action="store_true",
                        help="the peers alone on the same series, without Tidemill's pipeline")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    if args.combine:
        config["ensemble"]["combine"] = args.combine
    for tree in ("xgboost", "lightgbm"):
        params = config["algorithms"][tree]["params"]
        if args.strategy:
            params["strategy"] = args.strategy
        if args.direct_steps:
            params["direct_steps"] = args.direct_steps
    for item in args.set + args.drop:
        path, _, value = item.partition("=")
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if item in args.drop:
            node.pop(leaf)
        else:
            node[leaf] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory(prefix="tidemill-m4-") as tmp:
        data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
        if args.series:
            data = data[data["unique_id"].isin(data["unique_id"].unique()[: args.series])]
        if args.hours:
            data = data.groupby("unique_id", sort=False).tail(args.hours)
        if args.peers_only:
            _peers(data, config, args.arima, args.peer_models)
            return
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
          f"{'val OWA':>9}{'selection':>11}   (test; Naive2 sMAPE / MASE)")
    for cand in result["candidates"]:
        t = cand["test"]
        print(f"{cand['algorithm']:<16}{t['smape']:>8.3f}{t['mase']:>8.3f}{t['owa']:>8.3f}"
              f"{t.get('coverage', float('nan')):>7.2f}{cand['val']['mase']:>10.3f}"
              f"{cand['val']['owa']:>9.3f}{cand['val_metric']:>11.4f}   "
              f"({t['naive2_smape']:.3f} / {t['naive2_mase']:.3f})")
    print(f"selected: {result['registered']['algorithm']} (lowest validation "
          f"{result['candidates'][0]['metric']})")
    if args.peers:
        _peers(data, config, args.arima, args.peer_models)


HORIZON, SEASON = 48, 24


def _peers(data: pd.DataFrame, config: dict, arima: bool, models: str | None = None) -> None:
    """The peers' test forecasts, scored like ours (per series, then averaged; MASE scaled
    over the pipeline's in-sample of the test window)."""
    python = subprocess.run(["bash", str(REPO / "bench" / "peers-setup.sh")], check=True,
                            capture_output=True, text=True).stdout.split()[-1]
    test = data.groupby("unique_id", sort=False).tail(HORIZON)
    train = data.drop(index=test.index)
    with tempfile.TemporaryDirectory(prefix="tidemill-m4-peers-") as tmp:
        train.to_parquet(Path(tmp) / "train.parquet", index=False)
        cmd = [python, str(REPO / "bench" / "m4_peers.py"), "--input",
               str(Path(tmp) / "train.parquet"), "--output", str(Path(tmp) / "fc.parquet"),
               "--horizon", str(HORIZON), "--season", str(SEASON)]
        cmd += (["--arima"] if arima else []) + (["--models", models] if models else [])
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        timing = json.loads(done.stdout.strip().splitlines()[-1])
        forecasts = pd.read_parquet(Path(tmp) / "fc.parquet")
    ids = list(dict.fromkeys(data["unique_id"]))
    history = {u: g["y"].to_numpy(float) for u, g in train.groupby("unique_id", sort=False)}
    actual = {u: g["y"].to_numpy(float) for u, g in test.groupby("unique_id", sort=False)}
    # MASE's scale over the pipeline's in-sample: every value before the test window with
    # split.refit (M4's), else the training rows (without the validation rows)
    split = config["split"]
    cut = None if split.get("refit") else -int(split["val_size"])
    scale = {u: evaluation.mase_scale(history[u][:cut], SEASON) for u in ids}

    def score(pred: dict[str, np.ndarray]) -> tuple[float, float]:
        smapes = [float(evaluation.smape(actual[u], pred[u])) for u in ids]
        mases = [float(np.mean(np.abs(actual[u] - pred[u]))) / scale[u] for u in ids]
        return float(np.mean(smapes)), float(np.mean(mases))

    n2 = score({u: naive2.forecast(history[u], np.array([len(history[u])]), HORIZON,
                                   SEASON)[0] for u in ids})  # fmt: skip
    print(f"\npeers on the same {len(ids)} series (last {HORIZON} values each; Naive2 sMAPE "
          f"{n2[0]:.3f} / MASE {n2[1]:.3f})")
    print(f"{'model':<34}{'sMAPE':>8}{'MASE':>8}{'OWA':>8}{'wall s':>9}{'CPU s':>8}")
    for model, rows in forecasts.groupby("model", sort=False):
        pred = {u: g.sort_values("ds")["yhat"].to_numpy(float)
                for u, g in rows.groupby("unique_id", sort=False)}
        sm, ms = score(pred)
        t = timing[model]
        print(f"{model:<34}{sm:>8.3f}{ms:>8.3f}{naive2.owa(sm, ms, *n2):>8.3f}"
              f"{t['wall_s']:>9.1f}{t['cpu_s']:>8.1f}")


if __name__ == "__main__":
    main()
