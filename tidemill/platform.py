"""The local Tidemill platform: ``tidemill up`` / ``tidemill down`` / ``tidemill status``.

``up`` starts, all bound to 127.0.0.1: Airflow (API server with the UI, scheduler,
dag-processor, triggerer; LocalExecutor on the home's SQLite DB, DAGs unpaused), the MLflow UI
on the home's registry, the serving stack (when a registered model has a ``champion`` alias)
the platform API (datasets, training jobs as DAG runs through Airflow's REST API) and
Prometheus scraping the serving stack with the Tidemill alert rules loaded. Each service
runs in its own process group; name, PID, process group, start time and command line of each
are kept in ``<home>/platform.json``, logs in ``<home>/logs/``. ``down`` stops exactly those
process groups, after checking that each recorded PID still is the recorded process: same
kernel start time (``/proc/<pid>/stat``), so a reused PID is never signalled. The command line
is kept for people, not for that check: Airflow rewrites its processes' titles
(``airflow api_server -- host:...``). Linux only: identities are read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from monitoring.prometheus import render_config
from pipelines.feature_sources import AI4I_VIEW, ETTH1_VIEW, SHIPPED_SOURCES
from pipelines.home import HOME_ENV, TidemillHome
from tidemill.airflow_runs import BIN, REPO, airflow_env
from tidemill.airflow_sqlite import AIRFLOW_API_TIMEOUT_S

SERVING_PYTHON = REPO / ".venv" / "serving" / "bin" / "python"
ALERT_RULES = REPO / "monitoring" / "alerts" / "tidemill-rules.yaml"
LOOPBACK = "127.0.0.1"
STATE_FILE = "platform.json"
AIRFLOW_USER = "admin"
AIRFLOW_PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
STOP_ORDER = (
    "prometheus",
    "platform-api",
    "serving",
    "feature-server",
    "mlflow",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-api-server",
)
SCRAPE_INTERVAL = "5s"

Out = Callable[[str], None]
Record = dict[str, Any]


@dataclass(frozen=True)
class Ports:
    """TCP ports of the platform's services on 127.0.0.1."""

    airflow: int = 8280
    mlflow: int = 5000
    router: int = 8080
    control: int = 8000
    prometheus: int = 9090
    platform_api: int = 8001
    features: int = 6566


class PlatformError(RuntimeError):
    """A service could not start; the message names it and the end of its log."""


def up(
    home: TidemillHome | str | Path | None = None,
    ports: Ports = Ports(),
    *,
    serving_workers: int = 1,
    timeout: float = 300.0,
    out: Out = print,
) -> dict[str, str]:
    """Start the platform on ``home`` (idempotent) and return its URLs.

    Keys: ``airflow``, ``mlflow``, ``prometheus``, ``feature_server``, ``platform_api`` and,
    when a champion is served, ``router``,
    ``control_api`` and ``model_page`` (the MLflow page of the served registered model).
    On any failure everything started so far is stopped and PlatformError is raised.
    """
    home = _resolve(home)
    state = _read_state(home)
    if state is not None:
        if all(_owned(r) for r in state["processes"]):
            out(f"Tidemill platform already running on {home.root}")
            _print_summary(home, state, out)
            return state["urls"]
        out("[up] stopping the leftovers of a platform that is partly down")
        down(home, out=out)
    busy = [f"{name} {port}" for name, port in asdict(ports).items() if not _port_free(port)]
    if busy:
        raise PlatformError(f"ports already in use on {LOOPBACK}: {', '.join(busy)}")

    (home.root / "logs").mkdir(exist_ok=True)
    urls = {
        "airflow": f"http://{LOOPBACK}:{ports.airflow}",
        "mlflow": f"http://{LOOPBACK}:{ports.mlflow}",
        "prometheus": f"http://{LOOPBACK}:{ports.prometheus}",
        "feature_server": f"http://{LOOPBACK}:{ports.features}",
    }
    state = {"home": str(home.root), "ports": asdict(ports), "urls": urls, "processes": []}
    champions = _champion_models(home)  # before the MLflow server opens the same DB
    champion = champions[0] if champions else None
    if champion is None:
        state["note"] = (
            "serving not started: no registered model has a champion yet. Train one "
            f"(tidemill train --home {home.root}, or trigger forecast_training in Airflow), "
            "then run tidemill down and tidemill up again."
        )
    elif not SERVING_PYTHON.exists():
        state["note"] = f"serving not started: {SERVING_PYTHON} is missing (scripts/setup.sh)"
    serve = champion is not None and SERVING_PYTHON.exists()
    try:
        # no GenAI job runner (seven huey consumers, ~1 GiB) for a forecasting registry
        mlflow_env = {**_service_env(home), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        _start(home, state, "mlflow", _mlflow_command(home, ports), mlflow_env)
        _start(home, state, "prometheus", _prometheus_command(home, ports), _service_env(home))
        if serve:
            (home.root / "serving" / "stack.json").unlink(missing_ok=True)
            command = _serving_command(home, ports, champions, serving_workers)
            serving_env = {**_service_env(home),
                           "TIDEMILL_FEAST_FEATURE_SERVER_URL": urls["feature_server"]}
            _start(home, state, "serving", command, serving_env)
        if SERVING_PYTHON.exists():
            urls["platform_api"] = f"http://{LOOPBACK}:{ports.platform_api}"
            api_env = {**_service_env(home), "TIDEMILL_AIRFLOW_URL": urls["airflow"]}
            _start(home, state, "platform-api", _platform_api_command(ports), api_env)
        env = _airflow_env(home, ports.airflow)
        _run(home, "airflow-db-migrate", [str(BIN / "airflow"), "db", "migrate"], env)
        for name, command in _airflow_commands(ports.airflow).items():
            _start(home, state, name, command, env)
        # while Airflow starts: what a feature_materialize run with its defaults does (every
        # feature view published from the project's CSVs and materialised), then Feast's
        # feature server on them
        _run(home, "feature-sync", _feature_sync_command(home), _service_env(home), relay=out)
        _start(home, state, "feature-server", _feature_server_command(home, ports),
               _service_env(home))

        deadline = time.monotonic() + timeout
        _wait(state, ["mlflow"], f"{urls['mlflow']}/health", deadline)
        _wait(state, ["prometheus"], f"{urls['prometheus']}/-/ready", deadline)
        _wait(state, ["feature-server"], f"{urls['feature_server']}/health", deadline)
        if "platform_api" in urls:
            _wait(state, ["platform-api"], f"{urls['platform_api']}/healthz", deadline)
        if serve:
            stack = _wait_serving(home, state, deadline)
            urls["router"] = stack["router"]
            urls["control_api"] = stack["control_api"]
            urls["model_page"] = f"{urls['mlflow']}/#/models/{champion}"
            state["endpoint"] = stack["endpoint"]
            state["served"] = stack.get("models", [])
        _wait(
            state,
            list(_airflow_commands(ports.airflow)),
            f"{urls['airflow']}/api/v2/monitor/health",
            deadline,
            ok=_airflow_healthy,
        )
        state["unpaused"] = _unpause_dags(urls["airflow"], airflow_password(home))
        _write_state(home, state)
    except BaseException:
        down(home, out=lambda _line: None)
        raise
    _print_summary(home, state, out)
    return urls


def down(
    home: TidemillHome | str | Path | None = None, *, timeout: float = 60.0, out: Out = print
) -> list[str]:
    """Stop every process group ``up`` recorded for ``home`` and remove platform.json; return
    the names of the services stopped. The Airflow API server goes last, so that running tasks
    can still report to its execution API; each wave gets SIGTERM, then SIGKILL after
    ``timeout`` s."""
    home = _resolve(home)
    state = _read_state(home)
    if state is None:
        out(f"Tidemill platform: nothing recorded in {home.root / STATE_FILE}")
        return []
    records = sorted(
        (r for r in state["processes"] if _owned(r)),
        key=lambda r: _stop_rank(r.get("child_of") or r["name"]),
    )
    owned_names = {r["name"] for r in records}
    last = [r for r in records if r["name"] == "airflow-api-server"]
    for wave in ([r for r in records if r not in last], last):
        for record in wave:
            if record.get("child_of") not in owned_names:  # the serving stack stops its own
                _signal_group(record["pgid"], signal.SIGTERM)
        if not _wait_gone(wave, timeout):
            for record in wave:
                _signal_group(record["pgid"], signal.SIGKILL)
            _wait_gone(wave, 10.0)
    (home.root / STATE_FILE).unlink(missing_ok=True)
    stopped = [r["name"] for r in records]
    out(f"Tidemill platform stopped ({', '.join(stopped) or 'nothing was running'})")
    return stopped


def status(home: TidemillHome | str | Path | None = None, *, out: Out = print) -> dict[str, bool]:
    """Whether each recorded service is still running (empty when the platform is not up)."""
    home = _resolve(home)
    state = _read_state(home)
    if state is None:
        out(f"Tidemill platform: not running on {home.root}")
        return {}
    running = {r["name"]: _owned(r) for r in state["processes"]}
    out(f"Tidemill platform on {home.root}")
    for record in state["processes"]:
        word = "running" if running[record["name"]] else "STOPPED"
        out(f"  {record['name']:<22} pid {record['pid']:<8} {word:<8} log {record['log']}")
    for name, url in state["urls"].items():
        out(f"  {name:<22} {url}")
    return running


def airflow_password(home: TidemillHome | str | Path | None = None) -> str:
    """The generated password of the Airflow ``admin`` user (simple auth manager)."""
    path = _resolve(home).airflow_home / AIRFLOW_PASSWORD_FILE
    return json.loads(path.read_text())[AIRFLOW_USER]


# --- commands and environments ---------------------------------------------------------------


def _resolve(home: TidemillHome | str | Path | None) -> TidemillHome:
    return home if isinstance(home, TidemillHome) else TidemillHome.resolve(home)


def _service_env(home: TidemillHome) -> dict[str, str]:
    return {
        **os.environ,
        HOME_ENV: str(home.root),
        "MLFLOW_TRACKING_URI": home.mlflow_uri,
        "PYTHONUNBUFFERED": "1",
    }


def _airflow_env(home: TidemillHome, port: int) -> dict[str, str]:
    """``airflow_env`` plus: API server on 127.0.0.1:port, LocalExecutor, DAGs unpaused."""
    api = f"http://{LOOPBACK}:{port}"
    env = airflow_env(home)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__HOST": LOOPBACK,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def _airflow_commands(port: int) -> dict[str, list[str]]:
    """The Airflow components, each its own process. No ``--skip-serve-logs`` would start log
    servers on 0.0.0.0:8793/8794; the API server reads the local task logs itself."""
    airflow = str(BIN / "airflow")
    return {
        "airflow-api-server": [
            airflow,
            "api-server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        "airflow-scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "airflow-dag-processor": [airflow, "dag-processor"],
        "airflow-triggerer": [airflow, "triggerer", "--skip-serve-logs"],
    }


def _serving_command(home: TidemillHome, ports: Ports, models: list[str],
                     workers: int) -> list[str]:
    """The serving stack for every registered model with a champion, side by side (a lone
    model on the default endpoint, several each under its registered name)."""
    return [
        str(SERVING_PYTHON),
        "-m",
        "serving.stack",
        "--home",
        str(home.root),
        "--host",
        LOOPBACK,
        "--port",
        str(ports.router),
        "--control-port",
        str(ports.control),
        "--workers",
        str(workers),
        *(arg for model in models for arg in ("--model", model)),
    ]


def _feature_sync_command(home: TidemillHome) -> list[str]:
    """``tidemill features sync`` with the project's CSV of every feature view."""
    return [
        str(BIN / "tidemill"), "features", "sync", "--home", str(home.root),
        "--etth1", str(SHIPPED_SOURCES[ETTH1_VIEW]), "--ai4i", str(SHIPPED_SOURCES[AI4I_VIEW]),
    ]  # fmt: skip


def _feature_server_command(home: TidemillHome, ports: Ports) -> list[str]:
    """Feast's feature server on the home's feature store."""
    return [
        str(BIN / "tidemill"), "features", "serve", "--home", str(home.root),
        "--host", LOOPBACK, "--port", str(ports.features),
    ]  # fmt: skip


def _platform_api_command(ports: Ports) -> list[str]:
    """Datasets and training jobs (serving environment; token: the control API's)."""
    return [
        str(SERVING_PYTHON), "-m", "uvicorn", "serving.platform_api.app:app",
        "--host", LOOPBACK, "--port", str(ports.platform_api), "--no-access-log",
    ]  # fmt: skip


def _mlflow_command(home: TidemillHome, ports: Ports) -> list[str]:
    artifacts = home.artifacts_dir.as_uri()
    return [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        home.mlflow_uri,
        "--default-artifact-root",
        artifacts,
        "--artifacts-destination",
        artifacts,
        "--host",
        LOOPBACK,
        "--port",
        str(ports.mlflow),
        "--workers",
        "1",
    ]


def _prometheus_command(home: TidemillHome, ports: Ports) -> list[str]:
    """Write ``<home>/prometheus/prometheus.yml`` (router + control API + itself, alert rules)
    and return the server command line."""
    workdir = home.root / "prometheus"
    workdir.mkdir(exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        render_config(
            {
                "tidemill-router": [f"{LOOPBACK}:{ports.router}"],
                "tidemill-control-api": [f"{LOOPBACK}:{ports.control}"],
                "prometheus": [f"{LOOPBACK}:{ports.prometheus}"],
            },
            scrape_interval=SCRAPE_INTERVAL,
            evaluation_interval=SCRAPE_INTERVAL,
            rule_files=[ALERT_RULES],
        )
    )
    binary = shutil.which("prometheus")
    if binary is None:
        raise PlatformError("prometheus not found: run scripts/install-prometheus.sh")
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{ports.prometheus}",
        "--log.level=warn",
    ]


def _champion_models(home: TidemillHome) -> list[str]:
    """The registered models (by name) that have a ``champion`` alias."""
    from mlflow import MlflowClient

    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    return sorted(m.name for m in client.search_registered_models() if "champion" in m.aliases)


# --- processes ---------------------------------------------------------------------------------


def _start(
    home: TidemillHome, state: dict[str, Any], name: str, cmd: list[str], env: dict[str, str]
) -> None:
    """Start ``cmd`` in a new session (own process group), log to ``<home>/logs/<name>.log``,
    and record it in platform.json at once, so ``down`` finds it even if ``up`` dies."""
    log_path = home.root / "logs" / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state["processes"].append(_record(name, proc.pid, cmd, log_path))
    _write_state(home, state)


def _run(home: TidemillHome, name: str, cmd: list[str], env: dict[str, str],
         relay: Out | None = None) -> None:
    """Run a one-off command to completion with its output in ``<home>/logs/<name>.log``;
    ``relay`` gets its ``[tidemill]`` progress lines as they come (as ``[up] ...``)."""
    log_path = home.root / "logs" / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if relay is not None and line.startswith(b"[tidemill] "):
                relay("[up] " + line[11:].decode(errors="replace").rstrip())
        rc = proc.wait()
    if rc != 0:
        raise PlatformError(f"{name} exited with {rc}:\n{_tail(log_path)}")


def _record(
    name: str, pid: int, cmd: list[str], log_path: Path, child_of: str | None = None
) -> Record:
    stat = _proc_stat(pid)
    if stat is None:
        raise PlatformError(f"{name} (pid {pid}) exited at once:\n{_tail(log_path)}")
    record = {
        "name": name,
        "pid": pid,
        "pgid": stat[1],
        "start_time": stat[2],
        "cmd": cmd,
        "log": str(log_path),
    }
    if child_of:
        record["child_of"] = child_of
    return record


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks after boot) of ``pid``, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[19])


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members


def _owned(record: Record) -> bool:
    """Whether the recorded process group is still ours and has a live member.

    The recorded PID must still be the recorded process (same kernel start time) or gone.
    Linux never hands out a PID that is still some process group's id, so a PID now held by
    another process means our group died out and the PID was reused: not ours. While the
    leader (or, after it exited, any member) lives, the group id is ours.
    """
    stat = _proc_stat(record["pid"])
    if stat is not None and stat[2] != record["start_time"]:
        return False
    return bool(_group_members(record["pgid"]))


def _stop_rank(name: str) -> int:
    return STOP_ORDER.index(name) if name in STOP_ORDER else len(STOP_ORDER)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _wait_gone(records: list[Record], timeout: float) -> bool:
    """Wait until no member of the recorded groups lives (reaping our own children)."""
    deadline = time.monotonic() + timeout
    while True:
        for record in records:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(record["pid"], os.WNOHANG)
        if not any(_group_members(r["pgid"]) for r in records):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- readiness ---------------------------------------------------------------------------------


def _wait(
    state: dict[str, Any],
    names: list[str],
    url: str,
    deadline: float,
    ok: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
) -> None:
    """Poll ``url`` until ``ok``; PlatformError when a named service exits or time runs out."""
    records = [r for r in state["processes"] if r["name"] in names]
    with httpx.Client(timeout=5.0) as client:
        while True:
            for record in records:
                if not _owned(record):
                    raise PlatformError(
                        f"{record['name']} exited while starting; end of {record['log']}:\n"
                        f"{_tail(Path(record['log']))}"
                    )
            try:
                if ok(client.get(url)):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"{', '.join(names)} not ready at {url}; logs in "
                    f"{Path(records[0]['log']).parent}"
                )
            time.sleep(0.5)


def _airflow_healthy(resp: httpx.Response) -> bool:
    """The API answers and the metadata DB, scheduler, triggerer and dag-processor are healthy."""
    if resp.status_code != 200:
        return False
    health = resp.json()
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((health.get(p) or {}).get("status") == "healthy" for p in parts)


def _wait_serving(home: TidemillHome, state: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Wait for the stack's ``stack.json`` (written once router and control API are ready)
    and record the router and control API, which run in process groups of their own."""
    stack_file = home.root / "serving" / "stack.json"
    serving = next(r for r in state["processes"] if r["name"] == "serving")
    while not stack_file.exists():
        if not _owned(serving):
            raise PlatformError(
                f"serving exited while starting; end of {serving['log']}:\n"
                f"{_tail(Path(serving['log']))}"
            )
        if time.monotonic() > deadline:
            raise PlatformError(f"serving not ready; see {serving['log']}")
        time.sleep(0.5)
    stack = json.loads(stack_file.read_text())
    for name, pid in stack["pids"].items():
        state["processes"].append(
            _record(
                f"serving-{name}",
                pid,
                [f"serving.stack {name}"],
                Path(serving["log"]),
                child_of="serving",
            )
        )
    _write_state(home, state)
    _wait(state, ["serving"], f"{stack['router']}/v2/health/ready", deadline)
    return stack


def _unpause_dags(airflow_url: str, password: str, attempts: int = 5,
                  pause_s: float = 2.0) -> list[str]:
    """Unpause every DAG still paused (DAGs parsed later are created unpaused). On SQLite,
    Airflow's API answers 500 when the scheduler or DAG processor holds the write lock past
    the busy timeout (``tidemill.airflow_sqlite``; "database is locked", seen just after start
    on a busy machine): such answers are retried ``attempts`` times in all, ``pause_s`` more
    apart each time."""
    with httpx.Client(base_url=airflow_url, timeout=AIRFLOW_API_TIMEOUT_S) as client:
        token = (
            client.post("/auth/token", json={"username": AIRFLOW_USER, "password": password})
            .raise_for_status()
            .json()["access_token"]
        )
        for attempt in range(1, attempts + 1):
            resp = client.patch(
                "/api/v2/dags",
                params={"dag_id_pattern": "%", "paused": "true"},
                json={"is_paused": False},
                headers={"Authorization": f"Bearer {token}"},
            )
            if resp.status_code < 500 or attempt == attempts:
                break
            time.sleep(pause_s * attempt)
    return sorted(d["dag_id"] for d in resp.raise_for_status().json()["dags"])


# --- state and summary -------------------------------------------------------------------------


def _read_state(home: TidemillHome) -> dict[str, Any] | None:
    path = home.root / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(home: TidemillHome, state: dict[str, Any]) -> None:
    path = home.root / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def _print_summary(home: TidemillHome, state: dict[str, Any], out: Out) -> None:
    urls = state["urls"]
    out(f"Tidemill platform on {home.root} (all on {LOOPBACK})")
    out(f"  Airflow      {urls['airflow']}   login {AIRFLOW_USER} / {airflow_password(home)}")
    out(f"  MLflow       {urls['mlflow']}")
    if "router" in urls:
        out(f"  model        {urls['model_page']}")
        for served in state.get("served") or [{"endpoint": state["endpoint"]}]:
            name = f" ({served['registered_model']})" if "registered_model" in served else ""
            out(f"  predictions  {urls['router']}/v1/models/{served['endpoint']}:predict{name}")
        out(
            f"  control API  {urls['control_api']}/docs   (bearer token in "
            f"{home.root / 'serving' / 'control_token'})"
        )
    if "platform_api" in urls:
        out(
            f"  platform API {urls['platform_api']}/docs   (datasets, training jobs; bearer "
            f"token in {home.root / 'serving' / 'control_token'})"
        )
    out(f"  Prometheus   {urls['prometheus']}   (alerts {urls['prometheus']}/alerts)")
    if "feature_server" in urls:
        out(f"  features     {urls['feature_server']}   (Feast feature server; serving looks "
            "up entity keys there)")
    if state.get("unpaused"):
        out(f"  unpaused     {', '.join(state['unpaused'])}")
    if state.get("note"):
        out(f"  note: {state['note']}")
    out(f"  logs         {home.root / 'logs'}   stop with: tidemill down --home {home.root}")
