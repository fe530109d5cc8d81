"""Running Tidemill's DAGs through Airflow on a Tidemill home, without a scheduler.

``airflow dags test`` runs a DAG in-process against the home's SQLite metadata database. A DAG
it triggers (TriggerDagRunOperator) is only queued there; ``queued_conf`` reads that run's conf
so the caller can run the next DAG with it, as a scheduler would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines.home import HOME_ENV, TidemillHome

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def airflow_env(home: TidemillHome) -> dict[str, str]:
    """Environment for Airflow commands on this home: SQLite metadata, the repo's DAGs."""
    airflow_home = home.airflow_home
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("MLFLOW_REGISTRY_URI", None)  # the registry is the tracking store below
    env.update(
        {
            HOME_ENV: str(home.root),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "tidemill.airflow_sqlite.CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": (
                "tidemill.airflow_sqlite.CONNECT_ARGS"
            ),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "MLFLOW_TRACKING_URI": home.mlflow_uri,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_dag_test(home: TidemillHome, dag_id: str, conf: dict[str, Any], log_path: Path) -> int:
    """``airflow dags test`` with progress lines echoed; the full log goes to ``log_path``."""
    env = airflow_env(home)
    airflow = str(BIN / "airflow")
    if not (home.airflow_home / "airflow.db").exists():
        print("[demo] initialising the Airflow metadata database (SQLite)", flush=True)
        subprocess.run(
            [airflow, "db", "migrate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
    cmd = [airflow, "dags", "test", dag_id, "-c", json.dumps(conf)]
    print(f"[demo] {' '.join(cmd[1:4])} (log: {log_path})", flush=True)
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if "[tidemill]" in line or "[tune " in line or "ERROR" in line:
                print("  " + line.split("[tidemill] ", 1)[-1].rstrip(), flush=True)
        return proc.wait()


def queued_conf(home: TidemillHome, dag_id: str) -> dict[str, Any] | None:
    """The conf of the newest run of ``dag_id`` that another DAG triggered (None if none)."""
    db = sqlite3.connect(home.airflow_home / "airflow.db")
    try:
        row = db.execute(
            "select conf from dag_run where dag_id = ? and triggered_by = 'OPERATOR'"
            " order by id desc limit 1",
            (dag_id,),
        ).fetchone()
    finally:
        db.close()
    if row is None or row[0] is None:
        return None
    return json.loads(row[0]) if isinstance(row[0], str | bytes) else row[0]
