"""The local Airflow metadata database waits for another process's write lock instead of
failing after SQLite's default 5 s (the API answered 500 "database is locked" under load)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pipelines.home import TidemillHome
from tidemill.airflow_runs import airflow_env

HOLD_S = 6.5  # longer than SQLite's default busy timeout

WRITE = """
import sys, time, airflow.settings as s
print("ready", flush=True)
sys.stdin.readline()
started = time.monotonic()
with s.engine.begin() as c:
    c.exec_driver_sql("INSERT INTO probe VALUES (1)")
print(round(time.monotonic() - started, 1))
"""


def test_a_write_waits_out_another_writers_lock(tmp_path: Path) -> None:
    env = airflow_env(TidemillHome(tmp_path / "home"))
    db = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as Airflow sets it on every connection
    holder.execute("CREATE TABLE probe (x INTEGER)")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "ready"
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long scheduler transaction holds it
    writer.stdin.write("go\n")
    writer.stdin.flush()
    time.sleep(HOLD_S)
    holder.execute("COMMIT")
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-2000:]
    assert float(out.split()[-1]) >= HOLD_S - 1  # it waited out the lock, then wrote
    assert holder.execute("SELECT count(*) FROM probe").fetchone() == (1,)
