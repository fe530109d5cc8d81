"""A/B of Tidemill serving builds: batch-100 JSON requests, runs alternated between the builds.

On a shared 2-core machine the same code can use 1.0-1.8 ms of CPU per request an hour
apart, more than most changes save. So every build (a checkout of this repository) is started
at once, each on its own ports, idle while another one runs; the wrk runs then alternate
between them, the order reversed every round, and each round's runs are compared in pairs.

    .venv/serving/bin/python bench/serving_ab.py --rounds 6 \\
        base=/tmp/tidemill-base new=.

Each build runs ``python -m serving.stack --workers 2`` from its checkout (``PYTHONPATH``)
with this environment's packages, on the registered model of ``serving_bench.py`` (trained
into ``--home`` if missing), with its own prediction log (removed after the run).
``LABEL=PATH,VAR=VALUE`` also sets environment variables for that build. Printed per run:
rps, p50/p99, server CPU and wrk CPU per request; at the end the medians and, for every build
against the first, the median of the paired CPU ratios and p99 differences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import httpx
import serving_bench as sb  # beside this script

FIRST_PORT = 18300


def start(label: str, checkout: Path, extra: dict[str, str], port: int, home: Path,
          work: Path, body: dict[str, Any]) -> sb.Server:
    """One build's stack, ready and answering the body."""
    log_dir = work / label
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("prediction_log.db*"):
        old.unlink()
    env = {**sb.server_env(home), "PYTHONPATH": str(checkout.resolve()),
           "TIDEMILL_PREDICTION_LOG_URL": f"sqlite:///{log_dir / 'prediction_log.db'}", **extra}
    cmd = [str(sb.SERVING_PY), "-m", "serving.stack", "--home", str(home), "--port", str(port),
           "--control-port", str(port + 10), "--workers", "2", "--challenger-percent", "50"]
    with open(log_dir / "server.log", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    server = sb.Server(label, proc, f"{base}/v1/models/{sb.ENDPOINT}:predict",
                       f"{base}/v2/health/ready")
    sb.wait_ready(server, log_dir / "server.log")
    httpx.post(server.url, json=body, timeout=30).raise_for_status()
    return server


def run(wrk: str, server: sb.Server, body_path: Path, connections: int,
        duration: int) -> dict[str, float]:
    """One measured wrk run (``serving_bench.run_wrk``: a 2 s warm-up first)."""
    m = sb.run_wrk(wrk, server, body_path, connections, duration)
    return {"rps": m["rps"], "p50": m["p50_ms"], "p99": m["p99_ms"],
            "cpu": m["cpu_ms_per_request"], "wrk": m["wrk_cpu_ms_per_request"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+", help="LABEL=CHECKOUT[,VAR=VALUE...]")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--home", type=Path, default=Path("/tmp/tidemill-serving-bench"))
    args = parser.parse_args()
    sb.ensure_model(args.home)
    wrk = sb.ensure_wrk()
    work = args.home / "ab"
    work.mkdir(parents=True, exist_ok=True)
    body = sb.bodies(100)["tidemill"]
    body_path = work / "tidemill-100.json"
    body_path.write_text(json.dumps(body))
    servers: list[sb.Server] = []
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for i, spec in enumerate(args.builds):
            label, rest = spec.split("=", 1)
            checkout, *pairs = rest.split(",")
            extra = dict(pair.split("=", 1) for pair in pairs)
            servers.append(start(label, Path(checkout), extra, FIRST_PORT + 20 * i, args.home,
                                 work, body))
            runs[label] = []
        for r in range(args.rounds):
            for server in servers if r % 2 == 0 else servers[::-1]:
                m = run(wrk, server, body_path, args.connections, args.duration)
                runs[server.name].append(m)
                print(f"round {r} {server.name:12s} {m['rps']:6.0f} rps  p50 {m['p50']:5.2f}  "
                      f"p99 {m['p99']:6.2f} ms  cpu/req {m['cpu']:.3f} ms  "
                      f"wrk/req {m['wrk']:.3f} ms  load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for server in servers:
            server.stop()
            for log in (work / server.name).glob("prediction_log.db*"):  # gigabytes a run
                log.unlink()
    for label, ms in runs.items():
        print(f"{label:12s} medians: " + "  ".join(
            f"{key} {statistics.median(m[key] for m in ms):.3f}"
            for key in ("rps", "p50", "p99", "cpu", "wrk")))
    first, *others = runs
    for label in others:
        pairs = list(zip(runs[first], runs[label], strict=True))
        print(f"{label} vs {first}: paired median CPU/req ratio "
              f"{statistics.median(b['cpu'] / a['cpu'] for a, b in pairs):.3f}, p99 difference "
              f"{statistics.median(b['p99'] - a['p99'] for a, b in pairs):+.2f} ms "
              f"({len(pairs)} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
