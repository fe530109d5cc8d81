"""Scale: synthetic hourly panels of ``--series`` series (fixed seed: trend, daily and weekly
seasonality, noise, every tenth series intermittent), the whole training pipeline
(``run_pipeline``: validate, tune, train, backtest on validation and test, register) against
statsforecast and mlforecast fitting the same series in their own environment (``--peers``;
``--peer-models``, default AutoTheta and mlforecast's default LightGBM; each model in its own
process), with wall and CPU seconds and peak memory of each. ``--fit-compare`` adds Tidemill's
LightGBM fit and forecast alone (``bench/scale_fit.py``, its own process) beside mlforecast's
on the same features (``--peer-models lgbm168``). ``--skip-tidemill`` leaves the pipeline out.
``--fit-model xgboost`` makes that fit XGBoost's (same features and trees).
``--max-train-windows N`` caps the rows LightGBM trains on (a seeded sample of the panel's
windows; default: every window). Each line also gives the 1-minute load average before and
after (the machine may be shared: CPU seconds are the steadier figure).

    .venv/orchestrator/bin/python bench/scale.py --series 1000 2000 --hours 400 --peers
    .venv/orchestrator/bin/python bench/scale.py --series 1000 --skip-tidemill --peers \
        --peer-models snaive,theta,lgbm,lgbm168,ridge168 --fit-compare
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipelines.home import TidemillHome
from pipelines.workflow import run_pipeline

REPO = Path(__file__).resolve().parents[1]
HORIZON, SEASON = 48, 24


def synthetic_panel(series: int, hours: int, seed: int = 7) -> pd.DataFrame:
    """Hourly series: level * (1 + trend) + daily and weekly cycles + noise; every tenth series
    intermittent (zero most hours). Non-negative, like demand or load."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    level = rng.lognormal(4, 1, series)[:, None]
    trend = rng.normal(0, 0.3, series)[:, None] * t / hours
    daily = rng.uniform(0.1, 0.5, series)[:, None] * np.sin(2 * np.pi * (t + rng.integers(
        0, 24, series)[:, None]) / 24)
    weekly = rng.uniform(0, 0.2, series)[:, None] * np.sin(2 * np.pi * t / 168)
    y = level * (1 + trend + daily + weekly + rng.normal(0, 0.05, (series, hours)))
    intermittent = np.arange(series) % 10 == 9
    y[intermittent] *= rng.random((intermittent.sum(), hours)) < 0.3
    ds = pd.date_range("2024-01-01", periods=hours, freq="h")
    return pd.DataFrame({"unique_id": np.repeat([f"S{k}" for k in range(series)], hours),
                         "ds": np.tile(ds, series), "y": np.clip(y, 0, None).ravel()})


def scale_config(source: Path, max_train_windows: int | None = None) -> dict[str, Any]:
    """The scale run's config: ``configs/m4_hourly.yaml`` on ``source`` with three models (global
    LightGBM and nlinear on lookback 168, seasonal naive), one trial, no ensemble."""
    config = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    config["data"]["source"]["path"] = str(source)
    config["algorithms"] = {
        "seasonal_naive": {"params": {"season": SEASON}},
        "nlinear": {"params": {"lookback": 168}},
        "lightgbm": {"params": {"lookback": 168, "n_estimators": 100}},
    }
    if max_train_windows:
        config["algorithms"]["lightgbm"]["params"]["max_train_windows"] = max_train_windows
    config["ensemble"] = {"enabled": False}
    config["tuning"] = {**config["tuning"], "n_trials": 1}
    # one validation window per series on MASE, as in the figures of bench/RESULTS.md (M4's
    # 97 windows would hold 97 forecasts per series: 9.7 M windows at 100k series)
    config["split"] = {**config["split"], "val_size": 48}
    config["selection"] = {"metric": "mase"}
    # values as they are: the M4 config's log target would drop the intermittent series (zeros)
    config["preprocess"] = {**config["preprocess"], "target_transform": "none"}
    return config


def tidemill(source: Path, tmp: Path, max_train_windows: int | None = None
             ) -> dict[str, float]:  # fmt: skip
    config = scale_config(source, max_train_windows)
    (tmp / "panel.yaml").write_text(yaml.safe_dump(config))
    started, cpu = time.perf_counter(), time.process_time()
    result = run_pipeline(tmp / "panel.yaml", TidemillHome.resolve(tmp / "home"), run_key="scale")
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu,
            "selected": result["registered"]["algorithm"],
            "owa": {c["algorithm"]: c["test"]["owa"] for c in result["candidates"]}}


def _measured(cmd: list[str]) -> dict[str, dict[str, float]]:
    """Run a bench process printing a JSON line of timings; add its peak RSS to each."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], check=True, capture_output=True,
                          text=True)
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    peak = int(done.stderr.strip().splitlines()[-1]) // 1024
    return {name: {**t, "peak_rss_mib": peak} for name, t in timing.items()}


def peers(source: Path, tmp: Path, models: list[str]) -> dict[str, dict[str, float]]:
    """Each peer model fitting every series and forecasting, in its own process."""
    python = subprocess.run(["bash", str(REPO / "bench" / "peers-setup.sh")], check=True,
                            capture_output=True, text=True).stdout.split()[-1]
    timing = {}
    for model in models:
        spent = _measured([
            python, str(REPO / "bench" / "m4_peers.py"), "--input", str(source), "--output",
            str(tmp / "fc.parquet"), "--horizon", str(HORIZON), "--season", str(SEASON),
            "--models", model])
        print(json.dumps(spent), file=sys.stderr, flush=True)
        timing.update(spent)
    return timing


def tidemill_fit(source: Path, model: str) -> dict[str, dict[str, float]]:
    """Tidemill's ``model`` fit and forecast alone (``bench/scale_fit.py``), its own process."""
    return _measured([sys.executable, str(REPO / "bench" / "scale_fit.py"), "--input",
                      str(source), "--horizon", str(HORIZON), "--model", model])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000])
    parser.add_argument("--hours", type=int, default=400)
    parser.add_argument("--peers", action="store_true")
    parser.add_argument("--peer-models", default="theta,lgbm",
                        help="with --peers: bench/m4_peers.py --models, one process each")
    parser.add_argument("--fit-compare", action="store_true",
                        help="Tidemill's LightGBM fit and forecast alone (bench/scale_fit.py)")
    parser.add_argument("--fit-model", choices=["lightgbm", "xgboost"], default="lightgbm",
                        help="the model --fit-compare fits")
    parser.add_argument("--skip-tidemill", action="store_true", help="no run_pipeline")
    parser.add_argument("--max-train-windows", type=int, default=None)
    args = parser.parse_args()
    for n in args.series:
        with tempfile.TemporaryDirectory(prefix="tidemill-scale-") as tmp:
            # the panel goes to a file and its frame is dropped: the peak is the pipeline's
            source = Path(tmp) / "panel.parquet"
            synthetic_panel(n, args.hours).to_parquet(source, index=False)
            line = {"series": n, "rows": n * args.hours, "load_before": os.getloadavg()[0]}
            if not args.skip_tidemill:
                line["tidemill"] = tidemill(source, Path(tmp), args.max_train_windows)
                line["tidemill_peak_rss_mib"] = \
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            if args.fit_compare:
                line["tidemill_fit"] = tidemill_fit(source, args.fit_model)
            if args.peers:
                line["peers"] = peers(source, Path(tmp), args.peer_models.split(","))
            line["load_after"] = os.getloadavg()[0]
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
