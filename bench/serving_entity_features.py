"""The latency cost of online feature lookup: the AI4I classifier of ``bench/serving_tabular.py``
on the local stack (``python -m serving.stack``, 2 workers, 50/50 split, prediction log on)
answering ``/predict`` with the record's features sent (``features``) and by entity key
(``entity``: the router reads the features from Feast's feature server, ``tidemill features
serve``, 1 worker, over the SQLite online store holding all 10,000 AI4I records), in the same
run, all on 127.0.0.1.

    .venv/serving/bin/python bench/serving_entity_features.py [--home DIR] [--requests 1000]
        [--duration 10] [--fixed-order]

Sequential: ``--requests`` rounds, each posting one random record (UDI 6001-10000) both ways
and the same key straight to the feature server (``POST /get-online-features``, the lookup
alone), one client, one request at a time, the three in a random order each round (a request
that follows another router request waits for that one's background work, mostly its
prediction-log write; ``--fixed-order``, the order before, charged it all to ``entity``).
Under load: wrk (``bench/serving_wrk.lua``), 8 connections, one body per mode. Prints p50/p99
per mode and the ratio, and a Markdown table for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_bench import (
    REPO,
    SERVING_PY,
    TIDEMILL,
    Server,
    ensure_wrk,
    run_wrk,
    server_env,
    settle,
    wait_ready,
)
from serving_tabular import FEATURES, ensure_classifier, free_port

ENDPOINT = "tidemill-classifier"


def start_feature_server(home: Path, work: Path) -> tuple[Server, str]:
    """Publish and materialise the AI4I view in ``home``, then Feast's feature server on it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    subprocess.run([str(TIDEMILL), "features", "sync", "--home", str(home), "--ai4i",
                    str(REPO / "data" / "ai4i2020.csv")], env=env, check=True,
                   capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "feature-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(TIDEMILL), "features", "serve", "--home", str(home),
                                 "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Server("feature-server", proc, f"{url}/get-online-features", f"{url}/health")
    wait_ready(server, log)
    return server, url


def start_stack(home: Path, work: Path, feature_server: str) -> Server:
    port, env = free_port(), server_env(home)
    base = f"http://127.0.0.1:{port}"
    env["TIDEMILL_PREDICTION_LOG_URL"] = f"sqlite:///{work / 'prediction-log.db'}"
    env["TIDEMILL_FEAST_FEATURE_SERVER_URL"] = feature_server
    cmd = [str(SERVING_PY), "-m", "serving.stack", "--home", str(home), "--port", str(port),
           "--control-port", str(free_port()), "--workers", "2", "--challenger-percent", "50",
           "--endpoint", ENDPOINT]
    log = work / "stack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                start_new_session=True)
    server = Server("stack", proc, f"{base}/predict", f"{base}/v2/health/ready")
    wait_ready(server, log)
    return server


def sequential(stack: Server, feast_url: str, frame: pd.DataFrame, n: int,
               fixed_order: bool = False) -> dict[str, np.ndarray]:
    """``n`` interleaved rounds, one request of each mode per round; milliseconds each."""
    rng = random.Random(7)
    times: dict[str, list[float]] = {"features": [], "entity": [], "lookup alone": []}
    with httpx.Client(timeout=10) as client:
        for i in range(n + 50):  # the first 50 rounds warm up
            row = frame.iloc[rng.randrange(len(frame))]
            udi = int(row["UDI"])
            record = {c: (row[c] if c == "Type" else float(row[c])) for c in FEATURES}
            calls = {
                "features": (stack.url, {"features": record, "user_id": f"u{i}"}),
                "entity": (stack.url, {"entity": {"UDI": udi}, "user_id": f"u{i}"}),
                "lookup alone": (f"{feast_url}/get-online-features", {
                    "entities": {"UDI": [udi]},
                    "features": [f"ai4i_machine:{c}" for c in FEATURES]}),
            }
            answers = {}
            order = list(calls.items())
            for mode, (url, body) in order if fixed_order else rng.sample(order, len(order)):
                started = time.perf_counter()
                response = client.post(url, json=body)
                elapsed = (time.perf_counter() - started) * 1e3
                response.raise_for_status()
                answers[mode] = response.json()
                if i >= 50:
                    times[mode].append(elapsed)
            assert answers["features"]["prediction"] == answers["entity"]["prediction"], udi
    return {mode: np.asarray(values) for mode, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/tidemill-serving-entity-bench")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--fixed-order", action="store_true",
                        help="features, entity, lookup alone in every round (as before)")
    args = parser.parse_args()
    wrk = ensure_wrk()
    root = Path(args.home).resolve()
    home = root / "tabular"
    ensure_classifier(home)
    work = root / "bench-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig").iloc[6000:]
    load_start = "/".join(f"{x:.2f}" for x in os.getloadavg())
    feature_server, feast_url = start_feature_server(root / "feast-home", work)
    servers = [feature_server]
    try:
        stack = start_stack(home, work, feast_url)
        servers.append(stack)
        times = sequential(stack, feast_url, frame, args.requests, args.fixed_order)
        record = frame.iloc[0]
        bodies = {"features": {"features": {c: (record[c] if c == "Type" else float(record[c]))
                                            for c in FEATURES}},
                  "entity": {"entity": {"UDI": int(record["UDI"])}}}
        loaded = {}
        for mode, body in bodies.items():
            path = work / f"{mode}.json"
            path.write_text(json.dumps(body))
            loaded[mode] = run_wrk(wrk, stack, path, 8, args.duration)
            settle(stack)
    finally:
        for server in reversed(servers):
            server.stop()
    load_end = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at start {load_start}, at end {load_end}\n")
    print("| mode | sequential p50 ms | p99 ms | mean ms | 8 connections rps | p50 ms | p99 ms "
          "| errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, t in times.items():
        w = loaded.get(mode)
        tail = (f"{w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | {w['errors']}"
                if w else "- | - | - | -")
        print(f"| {mode} | {np.percentile(t, 50):.2f} | {np.percentile(t, 99):.2f} | "
              f"{t.mean():.2f} | {tail} |")
    f, e = times["features"], times["entity"]
    print(f"\nentity / features, sequential: p50 {np.percentile(e, 50) / np.percentile(f, 50):.2f}x"
          f", p99 {np.percentile(e, 99) / np.percentile(f, 99):.2f}x; under load: rps "
          f"{loaded['entity']['rps'] / loaded['features']['rps']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
