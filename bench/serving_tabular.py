"""Tabular serving beside forecasting: the same local stack (``python -m serving.stack``,
2 workers, 50/50 champion/challenger split, prediction log on) serving an AI4I 2020
classifier, the forecaster of ``bench/serving_bench.py`` served the same way, and ``mlflow
models serve`` of the classifier's version 1 (the peer), all on 127.0.0.1, measured in the
same run with wrk (``bench/serving_wrk.lua``) in a second process.

    .venv/serving/bin/python bench/serving_tabular.py [--home DIR] [--duration 10]

The classifier: version 1 logistic regression (champion), version 2 LightGBM with 100 trees
(challenger), trained on AI4I rows 0-4000 by the orchestrator venv's ``tidemill train``.
Bodies: V1 ``instances`` of real AI4I feature records (rows 6000 on) for Tidemill,
``dataframe_records`` of the same records for MLflow; the forecaster gets serving_bench's
24-value windows. Prints one line per run and a Markdown table to paste into
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_bench import (
    MLFLOW,
    REPO,
    SERVING_PY,
    TIDEMILL,
    Server,
    bodies,
    ensure_model,
    ensure_wrk,
    run_wrk,
    server_env,
    settle,
    wait_ready,
)

CLASSIFIER = "serving-bench-ai4i"
FEATURES = ["Type", "Air temperature", "Process temperature", "Rotational speed", "Torque",
            "Tool wear"]
SCENARIOS = [("batch1-c64", 1, 64), ("batch1-c8", 1, 8), ("batch100-c8", 100, 8)]


def ensure_classifier(home: Path) -> None:
    """Train the classifier twice (v1 logistic regression, v2 LightGBM) unless present."""
    if (home / "mlflow.db").exists():
        return
    cfg = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    cfg["data"]["source"]["path"] = str(REPO / "data" / "ai4i2020.csv")
    cfg["data"]["rows"] = {"start": 0, "stop": 4000}
    cfg["algorithms"] = {"logistic_regression": {"params": {"C": 1.0}},
                         "lightgbm": {"params": {"n_estimators": 100}}}
    cfg["tuning"] |= {"n_trials": 1}
    cfg["cv"] = {"method": "stratified", "folds": 2}
    cfg["mlflow"] = {"experiment": "serving-bench-ai4i", "registered_model_name": CLASSIFIER}
    home.mkdir(parents=True, exist_ok=True)
    config = home / "ai4i.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    for algorithm in ("logistic_regression", "lightgbm"):
        print(f"training {algorithm}", flush=True)
        subprocess.run([str(TIDEMILL), "train", "--config", str(config), "--home", str(home),
                        "--trials", "1", "--algorithms", algorithm], cwd=home, env=env,
                       check=True, capture_output=True)


def records(batch: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig")
    return frame[FEATURES].iloc[6000:6000 + batch].to_dict("records")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, home: Path, work: Path) -> Server:
    port, env = free_port(), server_env(home)
    base = f"http://127.0.0.1:{port}"
    if name == "mlflow-tabular":
        cmd = [str(MLFLOW), "models", "serve", "-m", f"models:/{CLASSIFIER}/1",
               "--env-manager", "local", "--workers", "2", "--host", "127.0.0.1",
               "--port", str(port)]
        url, ready = f"{base}/invocations", f"{base}/ping"
    else:
        endpoint = "tidemill-classifier" if name == "tidemill-tabular" else "tidemill-forecaster"
        cmd = [str(SERVING_PY), "-m", "serving.stack", "--home", str(home), "--port", str(port),
               "--control-port", str(free_port()), "--workers", "2", "--challenger-percent",
               "50", "--endpoint", endpoint]
        url, ready = f"{base}/v1/models/{endpoint}:predict", f"{base}/v2/health/ready"
        env["TIDEMILL_PREDICTION_LOG_URL"] = f"sqlite:///{work / (name + '-log.db')}"
    log = work / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                start_new_session=True)
    server = Server(name, proc, url, ready)
    wait_ready(server, log)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/tidemill-serving-tabular-bench")
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    wrk = ensure_wrk()
    root = Path(args.home).resolve()
    homes = {"tidemill-tabular": root / "tabular", "mlflow-tabular": root / "tabular",
             "tidemill-forecast": root / "forecast"}
    ensure_classifier(homes["tidemill-tabular"])
    ensure_model(homes["tidemill-forecast"])
    work = root / "bench-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for batch in (1, 100):
        recs = records(batch)
        (work / f"tidemill-tabular-{batch}.json").write_text(json.dumps({"instances": recs}))
        (work / f"mlflow-tabular-{batch}.json").write_text(
            json.dumps({"dataframe_records": recs}))
        (work / f"tidemill-forecast-{batch}.json").write_text(
            json.dumps(bodies(batch)["tidemill"]))
    load_start = "/".join(f"{x:.2f}" for x in os.getloadavg())
    servers: dict[str, Server] = {}
    runs: dict[str, dict[str, Any]] = {name: {} for name in homes}
    try:
        for name, home in homes.items():
            servers[name] = start(name, home, work)
        for scenario, batch, conns in SCENARIOS:
            for name, server in servers.items():
                r = run_wrk(wrk, server, work / f"{name}-{batch}.json", conns, args.duration)
                settle(server)
                runs[name][scenario] = r
                print(f"{name:18s} {scenario:12s} {r['rps']:7.0f} rps  p50 {r['p50_ms']:7.2f}  "
                      f"p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}  "
                      f"cpu/req {r['cpu_ms_per_request']:.2f} ms  load {r['load_1min']:.2f}",
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
    load_end = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at start {load_start}, at end {load_end}\n")
    print("| scenario | server | rps | p50 ms | p99 ms | errors | CPU ms/req | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scenario, _, _ in SCENARIOS:
        for name in homes:
            r = runs[name][scenario]
            print(f"| {scenario} | {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['errors']} | {r['cpu_ms_per_request']:.2f} | "
                  f"{r['load_1min']:.2f} |")
    print("\n| scenario | tabular rps / mlflow rps | tabular rps / forecast rps |")
    print("|---|---:|---:|")
    for scenario, _, _ in SCENARIOS:
        t = runs["tidemill-tabular"][scenario]["rps"]
        print(f"| {scenario} | {t / runs['mlflow-tabular'][scenario]['rps']:.2f}x | "
              f"{t / runs['tidemill-forecast'][scenario]['rps']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
