"""Real servers the shared-state tests start on loopback: SeaweedFS (S3), PostgreSQL and a
SQLite-backed ``mlflow server``.

SeaweedFS and PostgreSQL come from the project's own install scripts
(``scripts/install-seaweedfs.sh`` builds the pinned ``weed`` from the Go module proxy;
``scripts/install-postgresql.sh`` installs Debian's package), MLflow from the test's own
environment; all run in temporary directories on free ports; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up within {timeout_s:.0f} s")


@dataclass
class ObjectStore:
    """A SeaweedFS server with its S3 gateway; ``env`` is what a client process needs."""

    endpoint: str
    access_key: str
    secret_key: str
    cmd: list[str]
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

        def ready() -> bool:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
            except urllib.error.HTTPError:
                return True  # the gateway answers (403 to an anonymous listing)
            return True

        _wait(ready, f"SeaweedFS S3 at {self.endpoint} (log {self.log})")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s: the servers stop within a second, but ``weed
        server``'s filer then spends 15 s trying to flush its metadata event log to the volume
        server it already stopped, and drops it (what was written stays readable after a
        restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def make_bucket(self, name: str) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(key=self.access_key, secret=self.secret_key,
                               client_kwargs={"endpoint_url": self.endpoint})
        if not fs.exists(name):
            fs.mkdir(name)


@contextmanager
def seaweedfs(root: Path | None = None) -> Iterator[ObjectStore]:
    """``weed server`` (master, volume, filer, S3) on free loopback ports, one S3 identity."""
    weed = subprocess.run([str(REPO / "scripts" / "install-seaweedfs.sh")], check=True,
                          capture_output=True, text=True).stdout.split()[-1]
    own = root is None
    root = Path(root or tempfile.mkdtemp(prefix="tidemill-s3-"))
    (root / "data").mkdir(parents=True, exist_ok=True)
    access, secret = "tidemill", "tidemill-secret-key"
    identities = {"identities": [{"name": "tidemill",
                                  "credentials": [{"accessKey": access, "secretKey": secret}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (root / "s3.json").write_text(json.dumps(identities))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    cmd = [weed, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
           "-master.volumeSizeLimitMB=64", "-volume.max=20", "-volume.preStopSeconds=0",
           f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
           "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
           "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}",
           "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-s3.config={root / 's3.json'}"]
    store = ObjectStore(f"http://127.0.0.1:{ports['s3']}", access, secret, cmd,
                        root / "weed.log")
    store.start()
    try:
        yield store
    finally:
        store.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster (trust auth, no fsync); ``url(db)`` per database."""

    port: int
    pg_ctl: list[str]
    psql: list[str]

    def url(self, db: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        subprocess.run([*self.psql, "-c", f"CREATE DATABASE {name}"], check=True,
                       capture_output=True)
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True)

    def start(self) -> None:
        subprocess.run([*self.pg_ctl, "-w", "-t", "60", "start"], check=True,
                       capture_output=True)


@contextmanager
def postgres() -> Iterator[Postgres]:
    """Debian's PostgreSQL, initialised in a temporary directory, on a free loopback port."""
    found = subprocess.run([str(REPO / "scripts" / "install-postgresql.sh")], check=True,
                           capture_output=True, text=True).stdout.split()
    bin_dir = Path(found[-1])
    root = Path(tempfile.mkdtemp(prefix="tidemill-pg-"))
    data = root / "data"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        root.chmod(0o755)
        os.chown(data, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "--no-sync"], check=True, capture_output=True)
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
              "-o", f"-p {port} -h 127.0.0.1 -k {data} -F -c max_connections=200"]
    psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
            "-d", "postgres"]
    server = Postgres(port, pg_ctl, psql)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def mlflow_server(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``mlflow server`` of this environment on the SQLite file ``db`` (artifacts in its
    folder) at ``127.0.0.1:port``, started in its own session; returns once /health answers.
    Stop it with :func:`kill`."""
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
             "--default-artifact-root", db.parent.as_uri(), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status == 200

    _wait(up, f"mlflow server on port {port} (log {log})", 120)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM a process started in its own session (its whole process group: the workers or
    renderers it forked too), SIGKILL the group if it outlives ``timeout`` seconds. Nothing to do
    for ``None`` or a process that already ended."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server started in its own session (its whole process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
