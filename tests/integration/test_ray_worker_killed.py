"""A Ray worker killed in the middle of a training run.

Three training runs (``run_pipeline``, what the DAG's tasks and ``tidemill train`` call) in one
process with ``engine: {kind: ray}`` and the local Ray it starts, on 6 M4 hourly series (short
histories), ARIMA per series tuned by 2 Optuna trials, a real MLflow store: an untouched run;
the same run with a worker SIGKILLed while it fits a series' ARIMA and the workers of the
trials killed while a trial is running in the study; and a run whose trial tasks are killed on
every try.

Kills land mid-task, deterministically: the test stops (SIGSTOP) every process of the local Ray
at once, then kills only workers whose process title still names a task (``ray::_call``; an
idle worker reads ``ray::IDLE``), and, for the trials, only once the study holds a running
trial (nothing can finish it while everything is stopped); the other processes go on.

Asserts what the engine guarantees (``pipelines.engine``): a killed task is run again and the
run registers a version that forecasts exactly what the untouched run's does, each trial that
was running when its worker died marked failed in the study (none left running); a task killed
on every try fails the run with an error naming it, nothing registered, no candidate written,
no trial left running; and the local Ray is gone with the process (none of its processes left).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from mlflow import MlflowClient

from pipelines.home import TidemillHome

from .test_panel_dag import M4, ROWS, panel_config

SERIES = ["H1", "H2", "H4", "H6", "H7", "H8"]
RUNS = ("untouched", "killed", "doomed")
FITS = "[tidemill] train arima: fitting"
TRIALS = "[tidemill] tune arima:"

DRIVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import mlflow, pandas as pd
    from pipelines.home import TidemillHome
    from pipelines.workflow import run_pipeline

    home, out = TidemillHome.resolve(sys.argv[1]), Path(sys.argv[2])
    history = pd.read_parquet(sys.argv[3])
    for config in sys.argv[4:]:
        name = Path(config).stem
        print(f"== run {name}", flush=True)
        registered = run_pipeline(config, home, run_key=f"raykill-{name}")["registered"]
        model = mlflow.pyfunc.load_model(f"models:/{registered['name']}/{registered['version']}")
        model.predict(history, params={"horizon": 24}).to_parquet(out / f"{name}.parquet")
        (out / f"{name}.json").write_text(json.dumps(registered))
""")


def _config(tmp: Path, name: str) -> Path:
    path = panel_config(tmp)
    cfg = yaml.safe_load(path.read_text())
    data = pd.read_parquet(cfg["data"]["source"]["path"])
    data[data["unique_id"].isin(SERIES)].to_parquet(tmp / "six.parquet", index=False)
    cfg["data"]["source"]["path"] = str(tmp / "six.parquet")
    cfg["name"] = f"raykill-{name}"
    cfg["engine"] = {"kind": "ray"}
    cfg["algorithms"] = {"arima": {
        "params": {"d": 0, "q": 1, "fit_window": 100, "maxiter": 10},
        "search_space": {"p": {"type": "int", "low": 1, "high": 2}},
    }}
    cfg["tuning"]["n_trials"] = 2
    cfg["ensemble"] = {"enabled": False}
    cfg["mlflow"] = {"experiment": f"raykill-{name}", "registered_model_name": f"raykill-{name}"}
    out = tmp / f"{name}.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def _study(run: str) -> str:
    return f"raykill-{run}-arima-h24"


class Killer:
    """Reads the driver's output and watches its processes. After a line starting with a
    phase of ``plan`` in a run, kills the workers running tasks: one (``"one"``), all of them
    once a trial of the run's study is running (``"trial"``), or all of them until the run
    ends (``"all"``). Remembers every process the driver started."""

    def __init__(self, proc: subprocess.Popen[str], plan: dict[tuple[str, str], str],
                 optuna_db: Path) -> None:
        self.proc, self.plan, self.optuna_db = proc, plan, optuna_db
        self.t0 = time.monotonic()
        self.lines: list[str] = []
        self.kills: list[tuple[str, str, int]] = []  # (run, phase, pid)
        self.running_trials: dict[str, int] = {}  # run -> trials running when killed
        self.killed: set[int] = set()
        self.seen: dict[int, float] = {}  # pid -> create time, of every descendant
        self.run, self.phase, self.mode = "", "", ""
        self.threads = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._watch, daemon=True)]
        for t in self.threads:
            t.start()

    def _note(self, line: str) -> None:
        self.lines.append(f"{time.monotonic() - self.t0:6.1f}s {line}\n")

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip()
            self._note(line)
            if line.startswith("== run "):
                self.run, self.mode = line.split()[-1], ""
            for (run, phase), mode in self.plan.items():
                if run == self.run and line.startswith(phase):
                    self.phase, self.mode = phase, mode

    def _watch(self) -> None:
        driver = psutil.Process(self.proc.pid)
        while self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                ray = driver.children(recursive=True)
                for child in ray:
                    with contextlib.suppress(psutil.Error):
                        self.seen.setdefault(child.pid, child.create_time())
                if self.mode:
                    self._strike(ray)
            time.sleep(0.01)

    def _strike(self, ray: list[psutil.Process]) -> None:
        """Stop every Ray process, kill the chosen workers that still run a task, resume."""
        if not any(_running_task(p) for p in ray):
            return
        for p in ray:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGSTOP)
        try:
            busy = [p for p in ray if p.pid not in self.killed and _running_task(p)]
            if self.mode == "one":
                busy = busy[:1]
            elif self.mode == "trial" and busy:
                running = _running_trials(self.optuna_db, _study(self.run))
                busy = busy if running else []
                if busy:
                    self.running_trials[self.run] = running
            for p in busy:
                p.send_signal(signal.SIGKILL)
                self.killed.add(p.pid)  # its title may outlive it for a moment
                self.kills.append((self.run, self.phase, p.pid))
                self._note(f"killed {p.pid} ({self.run}: {self.phase})")
            if busy and self.mode != "all":
                self.mode = ""
        finally:
            for p in ray:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGCONT)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=30)


def _running_task(proc: psutil.Process) -> bool:
    try:
        return proc.cmdline()[:1] == ["ray::_call"]
    except psutil.Error:
        return False


def _running_trials(db: Path, study: str) -> int:
    """Trials of ``study`` running now (0 while the database is busy or not there yet)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)) as c:
            (n,) = c.execute(
                "SELECT count(*) FROM trials JOIN studies USING (study_id) "
                "WHERE study_name = ? AND state = 'RUNNING'", (study,)).fetchone()
    except sqlite3.Error:
        return 0
    return n


@pytest.fixture(scope="module")
def runs(airflow_home: TidemillHome, tmp_path_factory: pytest.TempPathFactory):
    """The three runs in one driver process (one local Ray); the suite's home (its MLflow
    store already made)."""
    home, tmp = airflow_home, tmp_path_factory.mktemp("raykill")
    configs = [_config(tmp, name) for name in RUNS]
    history = pd.read_parquet(M4)
    history = history[history["unique_id"].isin(SERIES)].groupby("unique_id").tail(ROWS)
    history.to_parquet(tmp / "history.parquet", index=False)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(home.root), str(tmp), str(tmp / "history.parquet"),
         *map(str, configs)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    plan = {("killed", FITS): "one", ("killed", TRIALS): "trial", ("doomed", TRIALS): "all"}
    killer = Killer(proc, plan, home.root / "optuna.db")
    try:
        proc.wait(timeout=300)
    finally:
        proc.kill()
    killer.join()
    (tmp / "driver.log").write_text("".join(killer.lines))
    print(f"three runs in {time.perf_counter() - started:.1f}s (log: {tmp / 'driver.log'})")
    return home, tmp, proc.returncode, killer


def test_killed_tasks_run_again_and_the_run_registers_what_an_untouched_run_does(runs):
    home, tmp, _, killer = runs
    log = "".join(killer.lines)
    phases = [phase for run, phase, _ in killer.kills if run == "killed"]
    assert TRIALS in phases and phases.count(FITS) == 1, log[-4000:]
    killed = json.loads((tmp / "killed.json").read_text())
    assert killed["name"] == "raykill-killed" and killed["algorithm"] == "arima"
    forecast = {k: pd.read_parquet(tmp / f"{k}.parquet") for k in RUNS[:2]}
    assert len(forecast["killed"]) == len(SERIES) * 24
    assert {"yhat", "yhat_lower", "yhat_upper"} <= set(forecast["killed"].columns)
    pd.testing.assert_frame_equal(forecast["killed"], forecast["untouched"], check_exact=True)
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    candidates = {}
    for name in RUNS[:2]:
        (candidates[name],) = client.search_runs(  # the one candidate, arima
            [client.get_experiment_by_name(f"raykill-{name}").experiment_id])
    killed_run, untouched_run = candidates["killed"], candidates["untouched"]
    assert killed_run.data.params == untouched_run.data.params  # the same tuned p
    for key in ("val_mase", "test_mase", "test_smape", "test_coverage", "cv_best_value"):
        assert killed_run.data.metrics[key] == untouched_run.data.metrics[key], key
    by_step = {name: sorted((m.step, m.value) for m in client.get_metric_history(
        run.info.run_id, "test_mae_by_step")) for name, run in candidates.items()}
    assert [step for step, _ in by_step["killed"]] == list(range(1, 25))
    assert by_step["killed"] == by_step["untouched"]


def test_each_trial_running_when_its_worker_died_is_failed_and_none_is_left_running(runs):
    import optuna

    home, _, _, killer = runs
    states = {
        run: [t.state.name for t in optuna.load_study(study_name=_study(run),
                                                      storage=home.optuna_uri).trials]
        for run in RUNS
    }
    assert sorted(states["untouched"]) == ["COMPLETE", "COMPLETE"]
    assert killer.running_trials["killed"] >= 1
    assert states["killed"].count("FAIL") == killer.running_trials["killed"]
    assert "RUNNING" not in states["killed"] and states["killed"].count("COMPLETE") >= 2
    assert "COMPLETE" not in states["doomed"] and "RUNNING" not in states["doomed"]


def test_a_task_killed_on_every_try_fails_the_run_with_nothing_registered(runs):
    home, tmp, returncode, killer = runs
    log = "".join(killer.lines)
    assert returncode == 1, log[-4000:]
    assert "(pipelines.tuning._ray_trial): its worker process died on each of 4 tries" in log
    assert len([run for run, _, _ in killer.kills if run == "doomed"]) >= 4
    assert not (tmp / "doomed.json").exists()
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    assert not client.search_registered_models("name = 'raykill-doomed'")
    experiment = client.get_experiment_by_name("raykill-doomed")
    assert experiment is None or not client.search_runs([experiment.experiment_id])
    assert not (home.runs_dir / "raykill-doomed" / "candidates").exists()


def test_the_local_ray_is_gone_with_the_process(runs):
    _, _, _, killer = runs
    assert len(killer.seen) >= 4  # GCS, raylet, workers at least
    left = dict(killer.seen)
    deadline = time.monotonic() + 20
    while left and time.monotonic() < deadline:
        left = {pid: t for pid, t in left.items() if _alive(pid, t)}
        time.sleep(0.2)
    assert not left, [psutil.Process(pid).cmdline() for pid in left]


def _alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
