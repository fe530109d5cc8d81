"""The local serving stack in the foreground: router (champion + challenger predictors in each
worker process) and control API, on 127.0.0.1, from the registry in the Tidemill home.

    python -m serving.stack --home H [--port 8080] [--control-port 8000] [--workers 2]
                            [--model NAME[=ENDPOINT] ...] [--endpoint tidemill-forecaster]
                            [--challenger-percent 20]

``--model`` may be repeated: the registered models are served side by side by one router, each
under its own endpoint (a lone model under ``--endpoint``; several under their registered names
unless ``=ENDPOINT`` names one), each with its own split file and sticky split, as each model
has its own InferenceService on Kubernetes. The control API changes one model's split at a time
(``model_name``; required when several are registered). On start each model's split is aligned
with its registry aliases (``champion``; ``challenger`` at ``--challenger-percent`` when it
names another version). The control token is
``TIDEMILL_CONTROL_TOKEN`` or, when unset, a random one kept in ``H/serving/control_token``.
The URLs are printed and written to ``H/serving/stack.json``. SIGTERM/SIGINT (or either
process exiting) stops everything; queued prediction-log rows are written before exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from mlflow import MlflowClient

from pipelines.home import TidemillHome
from pipelines.settings import Settings
from serving.config import DEFAULT_MODEL_NAME, parse_served
from serving.served_model import check_registered
from serving.split import LocalSplitBackend, Split, SplitControl, only_registered_model

READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 40.0


def control_token(home: TidemillHome) -> str:
    """``TIDEMILL_CONTROL_TOKEN`` or the home's token file (created once, mode 600)."""
    token = os.environ.get("TIDEMILL_CONTROL_TOKEN")
    if token:
        return token
    path = home.root / "serving" / "control_token"
    if not path.exists():  # linked into place whole: the stack and the platform API may race
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".control_token.{os.getpid()}")
        tmp.touch(mode=0o600)
        tmp.write_text(secrets.token_urlsafe(32))
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        tmp.unlink()
    return path.read_text().strip()


def _wait_ready(procs: dict[str, subprocess.Popen[bytes]], urls: dict[str, str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(urls)
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while starting")
            for name, url in list(pending.items()):
                try:
                    if client.get(url).status_code == 200:
                        del pending[name]
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f}s: {sorted(pending)}")
            time.sleep(0.3)


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process (graceful, flushes the log), SIGKILL to its group if stuck."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=None, help="Tidemill home (default $TIDEMILL_HOME)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="router (predictions)")
    parser.add_argument("--control-port", type=int, default=8000, help="control API")
    parser.add_argument("--workers", type=int, default=2, help="router worker processes")
    parser.add_argument("--model", action="append", default=[], metavar="NAME[=ENDPOINT]",
                        help="registered model to serve, repeat for several (default: the only "
                             "one)")
    parser.add_argument("--endpoint", default=DEFAULT_MODEL_NAME,
                        help="endpoint of a lone served model")
    parser.add_argument("--challenger-percent", type=int, default=20)
    args = parser.parse_args(argv)

    home = TidemillHome.resolve(args.home)
    shared = Settings.resolve(home)
    tracking_uri = shared.mlflow_tracking_uri
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        served = parse_served(args.model or [only_registered_model(client)], args.endpoint)
    except ValueError as exc:
        parser.error(str(exc))
    splits: dict[str, Split] = {}
    for registered, _endpoint in served:
        control = SplitControl(client, registered, LocalSplitBackend.for_home(home, registered),
                               check=check_registered)
        splits[registered] = control.sync(args.challenger_percent)
        if control.left_out:
            print(f"[stack] {registered}: {control.left_out}", file=sys.stderr, flush=True)

    serving_dir = home.root / "serving"
    prom_dir = serving_dir / "prometheus"
    shutil.rmtree(prom_dir, ignore_errors=True)
    prom_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "TIDEMILL_HOME": str(home.root),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TIDEMILL_PREDICTION_LOG_URL": shared.prediction_log_url,
        "TIDEMILL_CONTROL_TOKEN": control_token(home),
        "TIDEMILL_SPLIT_BACKEND": "local",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TIDEMILL_REGISTERED_MODEL", None)
    if len(served) == 1:  # the control API's default model_name
        env["TIDEMILL_REGISTERED_MODEL"] = served[0][0]
    router_url = f"http://{args.host}:{args.port}"
    control_url = f"http://{args.host}:{args.control_port}"
    commands: dict[str, list[str]] = {
        "router": [sys.executable, "-m", "serving.router", "--home", str(home.root),
                   "--host", args.host, "--port", str(args.port),
                   "--workers", str(args.workers),
                   *(a for r, e in served for a in ("--model", f"{r}={e}"))],
        "control-api": [sys.executable, "-m", "uvicorn", "serving.control_api:app",
                        "--host", args.host, "--port", str(args.control_port),
                        "--no-access-log"],
    }
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands.items():
            proc_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)} if name == "router" \
                else env
            procs[name] = subprocess.Popen(cmd, env=proc_env, start_new_session=True)
        _wait_ready(procs, {"router": f"{router_url}/v2/health/ready",
                            "control-api": f"{control_url}/readyz"})
        first_registered, first_endpoint = served[0]
        info = {
            "router": router_url, "control_api": control_url, "endpoint": first_endpoint,
            "registered_model": first_registered,
            "models": [{"registered_model": r, "endpoint": e,
                        "predictions": f"{router_url}/v1/models/{e}:predict"} for r, e in served],
            "token_file": str(serving_dir / "control_token"),
            "pids": {name: p.pid for name, p in procs.items()},
        }
        (serving_dir / "stack.json").write_text(json.dumps(info, indent=2))
        lines = [f"Tidemill serving stack (home {home.root})"]
        for registered, endpoint in served:
            split = splits[registered]
            challenger = f", challenger {split.challenger_uri} at " \
                f"{split.challenger_percent}%" if split.challenger_uri else ""
            lines += [f"  {registered}: predictions {router_url}/v1/models/{endpoint}:predict"
                      f"   (V2 {router_url}/v2/models/{endpoint}/infer)",
                      f"    split  champion {split.champion_uri}{challenger}"]
        print("\n".join([
            *lines,
            f"  spec         {router_url}/predict ({first_endpoint})",
            f"  control API  {control_url}   (docs {control_url}/docs; bearer token: "
            f"$TIDEMILL_CONTROL_TOKEN or {serving_dir / 'control_token'})",
            f"  metrics      {router_url}/metrics, {control_url}/metrics",
            "Press Ctrl+C to stop."]), flush=True)
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"[stack] {name} exited with {proc.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    except RuntimeError as exc:
        print(f"[stack] {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        _stop(procs)
        (serving_dir / "stack.json").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
