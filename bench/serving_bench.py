"""Serving benchmark: Tidemill's serving path vs ``mlflow models serve`` vs a stock
``kserve.ModelServer`` custom model calling the same pyfunc, same registered model, 2 workers
each, all on 127.0.0.1, load from wrk in a second process.

    .venv/serving/bin/python bench/serving_bench.py [--home DIR] [--duration 10] [--write-results]

Trains the model of ``bench/serving_config.yaml`` twice into the bench home (version 1 =
champion, 2 = challenger; the orchestrator venv's ``tidemill train``) unless already there.
Tidemill runs as ``python -m serving.stack`` at a 50/50 split with the prediction log on;
the baselines serve version 1. All three servers start first; each scenario then runs against
them in turn. Scenarios: batch 1 and batch 100 at 64 connections, batch 1 at
500 connections, batch 1 and batch 100 at 8 connections (latency); each after a 2 s warm-up
whose abandoned in-flight requests the server has worked off; then, Tidemill alone, batch 100
at 8 connections with the windows sent as V2 binary tensors. Server CPU per request is the
CPU time of the server's process tree during the run divided by the requests served.
``--write-results`` replaces the "## Serving" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SERVING_PY = REPO / ".venv" / "serving" / "bin" / "python"
TIDEMILL = REPO / ".venv" / "orchestrator" / "bin" / "tidemill"
MLFLOW = REPO / ".venv" / "serving" / "bin" / "mlflow"
ENDPOINT = "tidemill-forecaster"
SCENARIOS = [  # (name, batch, connections)
    ("batch1-c64", 1, 64),
    ("batch100-c64", 100, 64),
    ("batch1-c500", 1, 500),
    ("batch1-c8", 1, 8),
    ("batch100-c8", 100, 8),
]
# Tidemill alone: the batch100-c8 windows as V2 binary tensors (FP64 values, INT64 epoch
# timestamps), the Open Inference Protocol's binary data extension that KServe clients send.
BINARY_SCENARIO = "batch100-c8-v2binary"
PORTS = {"tidemill": 18180, "mlflow": 18181, "kserve": 18182}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "update"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def ensure_model(home: Path) -> str:
    """Train the bench model twice (v1 champion, v2 challenger) unless present."""
    cfg = yaml.safe_load((BENCH / "serving_config.yaml").read_text())
    name = cfg["mlflow"]["registered_model_name"]
    cfg["data"]["source"]["path"] = str(REPO / "data" / "ETTh1.csv")
    home.mkdir(parents=True, exist_ok=True)
    if (home / "mlflow.db").exists():
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
        versions = mlflow.MlflowClient().search_model_versions(f"name='{name}'")
        if len(versions) >= 2:
            info = mlflow.models.get_model_info(f"models:/{name}/1")
            if "unique_id" not in info.signature.inputs.input_names():
                raise SystemExit(f"{home} holds models whose signature lacks unique_id (logged "
                                 "before it was added): pass a fresh --home")
            return name
    config = home / "bench_config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    for _ in range(2):
        subprocess.run([str(TIDEMILL), "train", "--config", str(config), "--home", str(home),
                        "--trials", "1"], cwd=home, env=env, check=True, capture_output=True)
    return name


def history(n_rows: int = 24, start: int = 3000) -> tuple[list[str], list[float]]:
    import pandas as pd

    df = pd.read_csv(REPO / "data" / "ETTh1.csv", usecols=["date", "OT"])
    part = df.iloc[start:start + n_rows]
    stamps = pd.to_datetime(part["date"]).dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()
    return stamps, part["OT"].astype(float).tolist()


def bodies(batch: int) -> dict[str, dict[str, Any]]:
    """The same ``batch`` history windows in each server's request format. ``mlflow models
    serve`` gets them as one long frame told apart by ``unique_id`` (an optional column of the
    registered signature)."""
    windows = [history(start=3000 + 7 * i) for i in range(batch)]
    return {
        "tidemill": {"instances": [{"timestamps": ts, "values": ys, "series_id": f"s{i}"}
                                   for i, (ts, ys) in enumerate(windows)],
                     "parameters": {"horizon": 1}},
        "mlflow": {
            "dataframe_split": {"columns": ["unique_id", "ds", "y"],
                                "data": [[f"s{i}", t, y] for i, (ts, ys) in enumerate(windows)
                                         for t, y in zip(ts, ys, strict=True)]},
            "params": {"horizon": 1}},
        "kserve": {"instances": [{"unique_id": f"s{i}", "ds": ts, "y": ys}
                                 for i, (ts, ys) in enumerate(windows)]},
    }


def v2_binary_body(batch: int) -> tuple[bytes, int]:
    """The same windows as ``bodies(batch)`` encoded by kserve's client types with binary
    tensor data: the body and the length of its JSON part."""
    import numpy as np
    from kserve.protocol.infer_type import InferInput, InferRequest

    windows = [history(start=3000 + 7 * i) for i in range(batch)]
    values = np.asarray([ys for _, ys in windows], dtype=np.float64)
    stamps = np.asarray([ts for ts, _ in windows], dtype="datetime64[s]").astype(np.int64)
    inputs = []
    for name, datatype, data in (("values", "FP64", values), ("timestamps", "INT64", stamps)):
        tensor = InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data, binary_data=True)
        inputs.append(tensor)
    body, json_length = InferRequest(ENDPOINT, inputs, parameters={"horizon": 1}).to_rest()
    return body, json_length


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    ready_url: str

    def cpu_seconds(self) -> float:
        """User+system CPU of the server's process tree so far."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start(name: str, home: Path, model: str, log_dir: Path) -> Server:
    port = PORTS[name]
    env = server_env(home)
    base = f"http://127.0.0.1:{port}"
    if name == "tidemill":
        cmd = [str(SERVING_PY), "-m", "serving.stack", "--home", str(home), "--port", str(port),
               "--control-port", str(port + 10), "--workers", "2", "--challenger-percent", "50"]
        url, ready = f"{base}/v1/models/{ENDPOINT}:predict", f"{base}/v2/health/ready"
        # the run's own log (a batch-100 series writes gigabytes), counted and removed after
        env["TIDEMILL_PREDICTION_LOG_URL"] = f"sqlite:///{log_dir / 'prediction_log.db'}"
    elif name == "mlflow":
        cmd = [str(MLFLOW), "models", "serve", "-m", f"models:/{model}/1", "--env-manager",
               "local", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
        url, ready = f"{base}/invocations", f"{base}/ping"
    else:
        cmd = [str(SERVING_PY), str(BENCH / "serving_stock_kserve.py"), "--model-uri",
               f"models:/{model}/1", "--port", str(port), "--workers", "2"]
        url, ready = f"{base}/v1/models/stock:predict", f"{base}/v2/health/ready"
    with open(log_dir / f"{name}.log", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home,
                                start_new_session=True)
    server = Server(name, proc, url, ready)
    wait_ready(server, log_dir / f"{name}.log")
    return server


def server_env(home: Path) -> dict[str, str]:
    """The environment every benchmarked server starts with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    env.update({"PATH": f"{SERVING_PY.parent}:{env.get('PATH', '')}",
                "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
                "TF_CPP_MIN_LOG_LEVEL": "2", "TIDEMILL_CONTROL_TOKEN": "bench",
                # same for all three: no OpenMP oversubscription of 2 workers on 2 cores
                "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"})
    return env


def wait_ready(server: Server, log: Path, limit_s: float = 300.0) -> None:
    """Return once ``server.ready_url`` answers 200; stop it and raise if it dies or times out."""
    deadline = time.monotonic() + limit_s
    while True:
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            if httpx.get(server.ready_url, timeout=2).status_code == 200:
                return
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{server.name} did not start; see {log}")
        time.sleep(0.5)


def check(server: Server, body: dict[str, Any], batch: int) -> None:
    """One request must succeed and return ``batch`` forecasts before load starts."""
    resp = httpx.post(server.url, json=body, timeout=30)
    resp.raise_for_status()
    preds = resp.json()["predictions"]
    assert len(preds) == batch, (server.name, len(preds))


def _post(url: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None,
          timeout: float) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(url, content=body, headers=headers, timeout=timeout)
    return httpx.post(url, json=body, timeout=timeout)


def drain(server: Server, body: dict[str, Any] | bytes, limit_s: float = 120.0,
          headers: dict[str, str] | None = None) -> None:
    """Wait until the server answers promptly again: an overloaded server may still be
    working through requests queued by the previous run."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            _post(server.url, body, headers, 5).raise_for_status()
            if time.monotonic() - started < 0.5:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)


def settle(server: Server, limit_s: float = 120.0) -> None:
    """Wait until the server is idle (under 5% of a core over half a second): a server left
    with a backlog (wrk drops in-flight requests when it stops, the server answers them all)
    would otherwise spend it during the next server's run."""
    deadline = time.monotonic() + limit_s
    before = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server.cpu_seconds()
        if now - before < 0.025:
            return
        before = now


def run_wrk(wrk: str, server: Server, body_path: Path, connections: int,
            duration: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """wrk against ``server.url`` posting ``body_path``: JSON, or raw bytes with ``headers``
    (the Lua script takes the content type and the V2 JSON length from the environment)."""
    env = {**os.environ, "WRK_BODY": str(body_path)}
    if headers:
        env["WRK_CONTENT_TYPE"] = headers["content-type"]
        env["WRK_V2_JSON_LENGTH"] = headers["inference-header-content-length"]
    cmd = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "2s",
           "-s", str(BENCH / "serving_wrk.lua"), server.url]
    warm = [*cmd[:3], "-d2s", *cmd[4:]]
    subprocess.run(warm, env=env, capture_output=True, check=True)
    # wrk drops the warm-up's in-flight requests (up to one per connection) when it stops; the
    # server still answers them, and they must not delay or bill the measured run.
    if headers:
        drain(server, body_path.read_bytes(), headers=headers)
    else:
        drain(server, json.loads(body_path.read_text()))
    load = os.getloadavg()[0]
    cpu0, wrk0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    cpu, wrk1 = server.cpu_seconds() - cpu0, resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = wrk1.ru_utime + wrk1.ru_stime - wrk0.ru_utime - wrk0.ru_stime
    stats = json.loads(re.search(r"BENCH_JSON (\{.*\})", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = stats["requests"]
    seconds = stats["duration_us"] / 1e6
    return {
        "rps": requests / seconds,
        "requests": requests,
        "p50_ms": stats["p50_us"] / 1e3, "p95_ms": stats["p95_us"] / 1e3,
        "p99_ms": stats["p99_us"] / 1e3, "max_ms": stats["max_us"] / 1e3,
        "errors": stats["connect"] + stats["read"] + stats["write"]
        + (int(non2xx.group(1)) if non2xx else 0),
        "timeouts": stats["timeout"],
        "cpu_ms_per_request": cpu * 1e3 / max(requests, 1),
        "wrk_cpu_ms_per_request": wrk_cpu * 1e3 / max(requests, 1),
        "load_1min": load,
    }


def run_binary(wrk: str, tidemill: Server, work: Path, duration: int) -> dict[str, Any]:
    """``BINARY_SCENARIO``: batch 100 at 8 connections as V2 binary tensors."""
    body, json_length = v2_binary_body(100)
    path = work / "tidemill-v2binary-100.bin"
    path.write_bytes(body)
    headers = {"content-type": "application/octet-stream",
               "inference-header-content-length": str(json_length)}
    v2 = dataclasses.replace(tidemill, url=tidemill.url.replace(
        f"/v1/models/{ENDPOINT}:predict", f"/v2/models/{ENDPOINT}/infer"))
    resp = _post(v2.url, body, headers, 30)
    resp.raise_for_status()
    assert resp.json()["outputs"][0]["shape"] == [100, 1], resp.text
    r = run_wrk(wrk, v2, path, 8, duration, headers)
    settle(v2)
    print(f"tidemill  {BINARY_SCENARIO} {r['rps']:8.0f} rps  p50 {r['p50_ms']:7.2f}  "
          f"p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}  "
          f"cpu/req {r['cpu_ms_per_request']:.2f} ms  load {r['load_1min']:.2f}", flush=True)
    return r


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "## Serving",
        "",
        "Command: `.venv/serving/bin/python bench/serving_bench.py --write-results`",
        "",
        f"Date: {meta['date']}. Machine: {meta['machine']}. Load average (1/5/15 min) at start "
        f"{meta['load_start']}, at end {meta['load_end']} (other engineers' jobs share the "
        "machine). wrk 4.1 (2 threads, `--timeout 2s`) in a second process on 127.0.0.1, "
        f"{meta['duration']} s per run after a 2 s warm-up (and after the server has answered "
        "the requests the warm-up left in flight). All servers are started first; each "
        "scenario then runs against them in turn, each run starting once the previous "
        "server has worked off what wrk left in flight (the others idle).",
        "",
        f"Model: `{meta['model']}` (bench/serving_config.yaml: XGBoost, 24 lags, 100 trees, "
        "horizon 1), the same registered version behind every server; Tidemill serves "
        "version 1 and 2 at a 50/50 split (caller key rotated over 997 users), prediction "
        "log on (SQLite). 2 worker processes each: `python -m serving.stack --workers 2`, "
        "`mlflow models serve --workers 2 --env-manager local`, stock `kserve.ModelServer"
        "(workers=2)` with a custom model calling the pyfunc (bench/serving_stock_kserve.py). "
        "Batch = history windows per request. CPU/req = server process-tree CPU time per "
        "request (wrk's own CPU not counted). Load = 1-minute load average as the run started "
        "(the machine has 2 cores; above 2 other jobs were taking CPU from the servers).",
        "",
        "| scenario | server | rps | p50 ms | p95 ms | p99 ms | errors | timeouts | CPU ms/req "
        "| load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, _, _ in SCENARIOS:
        for server in ("tidemill", "mlflow", "kserve"):
            r = results["runs"].get(server, {}).get(scenario)
            if r is None:
                continue
            lines.append(
                f"| {scenario} | {server} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['timeouts']} | "
                f"{r['cpu_ms_per_request']:.2f} | {r['load_1min']:.2f} |")
    r = results["runs"].get("tidemill", {}).get(BINARY_SCENARIO)
    if r is not None:
        lines.append(
            f"| {BINARY_SCENARIO} | tidemill | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['timeouts']} | "
            f"{r['cpu_ms_per_request']:.2f} | {r['load_1min']:.2f} |")
        lines += ["", f"{BINARY_SCENARIO}: the batch100-c8 windows sent to Tidemill's "
                  "`/v2/models/{name}/infer` as binary tensors (Open Inference Protocol binary "
                  "data extension, encoded by kserve's `InferRequest.to_rest`: FP64 values, "
                  "INT64 epoch-second timestamps); the baselines run with their JSON bodies only."]
    lines += ["", "Throughput ratios (Tidemill rps / baseline rps):", "",
              "| scenario | vs mlflow models serve | vs stock KServe |", "|---|---:|---:|"]
    for scenario, ratios in results["ratios"].items():
        cells = [f"{ratios[b]:.2f}x" if ratios[b] is not None else "n/a (baseline 0 rps)"
                 for b in ("mlflow", "kserve")]
        lines.append(f"| {scenario} | {cells[0]} | {cells[1]} |")
    lines += ["", "Targets:", ""]
    lines += [f"- {name}: {'met' if ok else 'NOT met'} ({detail})"
              for name, ok, detail in results["targets"]]
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    """Replace the ``## Serving`` section of RESULTS.md up to its first ``### `` subsection
    (hand-written notes live there) or the next ``## `` section; append it when absent."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Serving\n.*?(?=^##+ |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def targets(runs: dict[str, Any]) -> list[tuple[str, bool, str]]:
    t = runs["tidemill"]
    return [
        # The issue measures latency at 8 connections (its aim for the same figure is 10 ms);
        # 64 connections saturate 2 cores, where mean latency is 64 / throughput.
        ("batch-100 latency under 100 ms (p99, 8 conn.: the latency scenario)",
         t["batch100-c8"]["p99_ms"] < 100, f"p99 {t['batch100-c8']['p99_ms']:.1f} ms"),
        ("stricter reading: batch-100 p99 under 100 ms at 64 conn. (saturated)",
         t["batch100-c64"]["p99_ms"] < 100,
         f"p99 {t['batch100-c64']['p99_ms']:.1f} ms, mean bound 64 / "
         f"{t['batch100-c64']['rps']:.0f} rps = {64e3 / t['batch100-c64']['rps']:.0f} ms"),
        ("1000 requests/s (batch 1, 64 conn.)", t["batch1-c64"]["rps"] >= 1000,
         f"{t['batch1-c64']['rps']:.0f} rps"),
        ("500 concurrent users without errors (wrk timeouts counted as errors)",
         t["batch1-c500"]["errors"] + t["batch1-c500"]["timeouts"] == 0,
         f"{t['batch1-c500']['errors']} errors, {t['batch1-c500']['timeouts']} timeouts"),
        ("aim: 3x mlflow models serve (batch 1, 64 conn.)",
         t["batch1-c64"]["rps"] >= 3 * runs["mlflow"]["batch1-c64"]["rps"],
         f"{t['batch1-c64']['rps'] / runs['mlflow']['batch1-c64']['rps']:.2f}x"),
        ("aim: 1.5x stock KServe (batch 1, 64 conn.)",
         t["batch1-c64"]["rps"] >= 1.5 * runs["kserve"]["batch1-c64"]["rps"],
         f"{t['batch1-c64']['rps'] / runs['kserve']['batch1-c64']['rps']:.2f}x"),
        ("aim: batch-100 p99 under 10 ms at 8 conn.", t["batch100-c8"]["p99_ms"] < 10,
         f"p99 {t['batch100-c8']['p99_ms']:.2f} ms"),
        *([(f"aim, with V2 binary bodies ({BINARY_SCENARIO}): batch-100 p99 under 10 ms at "
            "8 conn.", t[BINARY_SCENARIO]["p99_ms"] < 10,
            f"p99 {t[BINARY_SCENARIO]['p99_ms']:.2f} ms")] if BINARY_SCENARIO in t else []),
        ("aim: 500 connections without a single error or timeout",
         t["batch1-c500"]["errors"] == 0 and t["batch1-c500"]["timeouts"] == 0,
         f"{t['batch1-c500']['errors']} errors, {t['batch1-c500']['timeouts']} timeouts"),
    ]


def report_prediction_log(path: Path) -> None:
    """Print how many requests Tidemill's log holds after the run, then delete it."""
    if not path.exists():
        return
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT count(*) FROM prediction_requests").fetchone()[0]
    print(f"prediction log: {rows} requests logged, {path.stat().st_size / 2**20:.0f} MiB "
          "(deleted)")
    path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/tidemill-serving-bench")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--servers", default="tidemill,mlflow,kserve")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    wrk = ensure_wrk()
    home = Path(args.home).resolve()
    model = ensure_model(home)
    work = home / "bench-run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    payloads = {batch: bodies(batch) for batch in (1, 100)}
    load_start = "/".join(f"{x:.2f}" for x in os.getloadavg())
    runs: dict[str, dict[str, Any]] = {}
    servers: dict[str, Server] = {}
    try:
        for name in args.servers.split(","):  # all up at once, idle until their turn
            server = servers[name] = start(name, home, model, work)
            for batch in (1, 100):
                check(server, payloads[batch][name], batch)
                (work / f"{name}-{batch}.json").write_text(json.dumps(payloads[batch][name]))
            runs[name] = {}
        # Scenario by scenario, the servers in turn: a change in the machine's load from other
        # jobs then hits the servers of one scenario alike, not one server's whole series.
        for scenario, batch, conns in SCENARIOS:
            for name, server in servers.items():
                drain(server, payloads[1][name])
                r = run_wrk(wrk, server, work / f"{name}-{batch}.json", conns, args.duration)
                settle(server)
                runs[name][scenario] = r
                print(f"{name:9s} {scenario:13s} {r['rps']:8.0f} rps  p50 {r['p50_ms']:7.2f}  "
                      f"p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}"
                      f"  timeouts {r['timeouts']}  cpu/req {r['cpu_ms_per_request']:.2f} ms"
                      f"  load {r['load_1min']:.2f}",
                      flush=True)
        if "tidemill" in servers:
            runs["tidemill"][BINARY_SCENARIO] = run_binary(wrk, servers["tidemill"], work,
                                                           args.duration)
    finally:
        for server in servers.values():
            server.stop()
        report_prediction_log(work / "prediction_log.db")
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.uname().sysname} {os.uname().machine}, {os.cpu_count()} cores, "
                       f"Python {sys.version.split()[0]}",
            "load_start": load_start,
            "load_end": "/".join(f"{x:.2f}" for x in os.getloadavg()),
            "duration": args.duration,
            "model": model,
        },
        "runs": runs,
        "ratios": {},
        "targets": [],
    }
    if {"tidemill", "mlflow", "kserve"} <= set(runs):
        for scenario, _, _ in SCENARIOS:
            t = runs["tidemill"][scenario]["rps"]
            results["ratios"][scenario] = {
                base: t / runs[base][scenario]["rps"]
                if runs[base][scenario]["rps"] > 0 else None
                for base in ("mlflow", "kserve")}
        results["targets"] = targets(runs)
        for name, ok, detail in results["targets"]:
            print(f"{'met' if ok else 'NOT met':8s} {name}: {detail}")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    if args.write_results:
        write_section(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
