"""An Airflow executor that runs every task the way the KubernetesExecutor runs a pod.

Each workload runs as ``python -m airflow.sdk.execution_time.execute_workload`` (what a
KubernetesExecutor pod runs) in a fresh process with an empty working directory and its own
``TIDEMILL_HOME``, ``AIRFLOW_HOME`` and ``TMPDIR``, all deleted when the process ends. The
environment carries only URLs (``NOSHARING_TASK_ENV``, a JSON object); XCom goes through the
Airflow API server into the PostgreSQL metadata database. What each task left in its scratch
folders is recorded in ``NOSHARING_RECORD`` (one JSON line per task) before the deletion, so a
task can never read a file another task wrote locally.

Only the no-shared-disk harness (``tests/nosharing``) uses this; set it with
``AIRFLOW__CORE__EXECUTOR=tests.nosharing.executor.IsolatedTaskExecutor``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow.executors.base_executor import BaseExecutor

ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")


class IsolatedTaskExecutor(BaseExecutor):
    """One fresh process, working directory and set of homes per task."""

    def start(self) -> None:
        self.procs: dict[Any, tuple[subprocess.Popen, Path, Any, float, str]] = {}
        self.runs: dict[Any, str] = {}
        self.task_env = json.loads(os.environ["NOSHARING_TASK_ENV"])
        self.record = Path(os.environ["NOSHARING_RECORD"])
        self.logs = Path(os.environ["NOSHARING_LOGS"])
        self.logs.mkdir(parents=True, exist_ok=True)

    def _process_workloads(self, workload_list: list[Any]) -> None:
        for workload in workload_list:
            self.queued_tasks.pop(workload.key, None)
            self._launch(workload)

    def _launch(self, workload: Any) -> None:
        scratch = Path(tempfile.mkdtemp(prefix="nosharing-task-"))
        dirs = {name: scratch / name for name in ("cwd", "home", "airflow", "tmp")}
        for folder in dirs.values():
            folder.mkdir()
        env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
        env |= self.task_env | {
            "TIDEMILL_HOME": str(dirs["home"]),
            "AIRFLOW_HOME": str(dirs["airflow"]),
            "TMPDIR": str(dirs["tmp"]),
            "HOME": str(dirs["home"]),
        }
        ti = workload.ti
        name = f"{ti.dag_id}.{ti.task_id}.{ti.map_index}.{ti.try_number}"
        run = "".join(c if c.isalnum() else "_" for c in ti.run_id)
        with open(self.logs / f"{name}.{run}.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "airflow.sdk.execution_time.execute_workload",
                 "--json-string", workload.model_dump_json()],
                cwd=dirs["cwd"], env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs[workload.key] = (proc, scratch, workload, time.monotonic(), name)
        self.runs[workload.key] = ti.run_id
        self.running.add(workload.key)

    def sync(self) -> None:
        for key, (proc, scratch, workload, started, name) in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self.procs[key]
            left = sorted(
                str(p.relative_to(scratch)) for p in scratch.rglob("*") if p.is_file()
            )
            with open(self.record, "a") as out:
                out.write(json.dumps({"task": name, "run": self.runs.pop(key), "pid": proc.pid,
                                      "rc": rc,
                                      "seconds": round(time.monotonic() - started, 1),
                                      "scratch": str(scratch), "left": left}) + "\n")
            shutil.rmtree(scratch, ignore_errors=True)
            if rc == 0:
                self.change_state(key, workload.success_state)
            else:
                self.fail(key)

    def end(self) -> None:
        while self.procs:
            self.sync()
            time.sleep(0.5)

    def terminate(self) -> None:
        for proc, *_ in self.procs.values():
            proc.kill()
        self.end()
