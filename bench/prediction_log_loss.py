"""Prediction-log loss when a router worker is SIGKILLed under load.

    .venv/serving/bin/python bench/prediction_log_loss.py [--home DIR] [--duration 60]
        [--kill-at 15] [--connections 200] [--batch 1]

Starts Tidemill's stack as ``bench/serving_bench.py`` does (2 workers, 50/50 split, the run's
own SQLite prediction log), runs wrk (2 threads, ``--connections``, ``--duration`` seconds)
and SIGKILLs one router worker ``--kill-at`` seconds in. Once the server is idle it reads
``tidemill_requests_total`` (every worker's multiprocess counter, the killed one's included:
each request is counted before its log entry is queued) and, after a graceful stop that
flushes the surviving workers' queues, counts the logged rows. Lost = served - logged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_bench import (
    BENCH,
    bodies,
    ensure_model,
    ensure_wrk,
    settle,
    start,
)


def _served(metrics_url: str) -> tuple[int, float]:
    """Requests counted by every worker, and prediction-log rows dropped (counted)."""
    text = httpx.get(metrics_url, timeout=30).text
    served = sum(float(v) for v in re.findall(r"^tidemill_requests_total\{[^}]*\} (\S+)$", text,
                                              re.M))
    dropped = sum(float(v) for v in re.findall(
        r"^tidemill_prediction_log_dropped_rows_total(?:\{[^}]*\})? (\S+)$", text, re.M))
    return int(served), dropped


def _workers(stack_pid: int) -> list[psutil.Process]:
    router = next(p for p in psutil.Process(stack_pid).children()
                  if "serving.router" in " ".join(p.cmdline()))
    return [p for p in router.children() if "resource_tracker" not in " ".join(p.cmdline())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "tm-bench")
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--kill-at", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    wrk = ensure_wrk()
    model = ensure_model(args.home)
    work = Path(tempfile.mkdtemp(prefix="tm-log-loss-"))
    body = work / "body.json"
    body.write_text(json.dumps(bodies(args.batch)["tidemill"]))
    server = start("tidemill", args.home, model, work)
    try:
        cmd = [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "2s",
               "-s", str(BENCH / "serving_wrk.lua"), server.url]
        load = subprocess.Popen(cmd, env={**os.environ, "WRK_BODY": str(body)},
                                stdout=subprocess.PIPE, text=True)
        time.sleep(args.kill_at)
        victim = _workers(server.proc.pid)[0]
        os.kill(victim.pid, signal.SIGKILL)
        print(f"[log-loss] SIGKILLed worker {victim.pid} at {args.kill_at:g} s", flush=True)
        out = load.communicate()[0]
        stats = json.loads(re.search(r"BENCH_JSON (\{.*\})", out).group(1))
        settle(server)
        base = server.url.split("/v1/")[0]
        served, dropped = _served(f"{base}/metrics")
    finally:
        server.stop()
    log_db = work / "prediction_log.db"
    with sqlite3.connect(log_db) as db:
        logged = db.execute("SELECT count(*) FROM prediction_requests").fetchone()[0]
    lost = served - logged
    print(f"[log-loss] wrk: {stats['requests']} responses in {stats['duration_us'] / 1e6:.1f} s "
          f"({args.connections} connections, batch {args.batch})")
    print(f"[log-loss] served {served}, logged {logged}, lost {lost} "
          f"({100 * lost / max(served, 1):.2f}%), dropped (counted) {dropped:.0f}")
    log_db.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
