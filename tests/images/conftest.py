"""Every Tidemill image, built by ``scripts/images.sh`` (podman, stand-in bases from Debian
bookworm) and run the way the chart runs it: the chart's user id, a read-only root filesystem
with only the chart's writable mounts (``/tmp``), all capabilities dropped, no privilege
escalation, the chart's environment variables. Containers share the host network and bind
127.0.0.1 on free ports (in a pod they bind 0.0.0.0 on the chart's fixed ports).

Session services (tests/servers.py): PostgreSQL (Debian's package) holding the MLflow backend
store, the prediction log and Optuna's storage, SeaweedFS as the S3 object store (the chart's
bucket), the MLflow image serving the registry with its artifacts proxied to S3, and two
versions of a small forecaster registered through that server by the real training pipeline.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests import servers
from tests.servers import ObjectStore, Postgres, free_port

REPO = Path(__file__).resolve().parents[2]
IMAGES_SH = REPO / "scripts" / "images.sh"
TIDEMILL = REPO / ".venv" / "orchestrator" / "bin" / "tidemill"
TAG = "local"
ENDPOINT = "tidemill-forecaster"
REGISTERED = "images-forecaster"
TOKEN = "images-test-token"
TIDEMILL_UID = "10001:10001"  # charts/tidemill values.yaml containerSecurityContext
AIRFLOW_UID = "50000:0"  # charts/airflow-values.yaml securityContexts.pod
BUCKET = "tidemill"  # charts/tidemill values.yaml s3.bucket


def small_config(data: Path, experiment: str, registered: str) -> dict:
    """A small ETTh1 slice with the fast algorithms (one Optuna trial)."""
    return {
        "name": experiment,
        "data": {
            "source": {"kind": "csv", "path": str(data)},
            "time_column": "date", "target_column": "OT", "series_id": "ETTh1", "freq": "h",
            "rows": {"start": 0, "stop": 2000},
        },
        "split": {"val_size": 300, "test_size": 300},
        "horizon": 12,
        "algorithms": {"nlinear": {"params": {"lookback": 48}},
                       "seasonal_naive": {"params": {"season": 24}}},
        "tuning": {"n_trials": 1, "cv_folds": 2, "seed": 7, "max_origins_per_fold": 30},
        "mlflow": {"experiment": experiment, "registered_model_name": registered},
    }


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """podman with the settings scripts/images.sh builds with (runc, cgroupfs, no ulimits)."""
    proc = subprocess.run(["bash", str(IMAGES_SH), "podman", *args], capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def image(name: str) -> str:
    return f"localhost/tidemill/{name}:{TAG}"


@dataclass
class Container:
    name: str
    url: str = ""

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return (proc.stdout + proc.stderr)[-6000:]

    def running(self) -> bool:
        try:
            proc = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False,
                          timeout=30)
        except subprocess.TimeoutExpired:  # the image store is locked (a build commits)
            return True
        return proc.stdout.strip() == "true"

    def wait_http(self, path: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}{path}", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.running() or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {path} never answered 200:\n{self.logs()}")
            time.sleep(0.5)

    def stop(self) -> None:
        podman("rm", "-f", "-t", "10", self.name, check=False)


def run_container(name: str, *, user: str, env: dict[str, str], command: list[str] | None = None,
                  volumes: list[str] = (), read_only: bool = True, url: str = "") -> Container:
    """``podman run -d`` of image ``name`` with the chart's pod security: its uid, a read-only
    root filesystem with /tmp the only writable path (the chart's emptyDir), no capabilities."""
    cname = f"tidemill-test-{name}-{uuid.uuid4().hex[:6]}"
    podman("run", "-d", "--name", cname,
           *run_args(name, user=user, env=env, command=command, volumes=volumes,
                     read_only=read_only))
    return Container(cname, url)


def run_args(name: str, *, user: str, env: dict[str, str], command: list[str] | None,
             volumes: list[str], read_only: bool) -> list[str]:
    args = ["--network", "host", "--ulimit", "host", "--user", user, "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,exec,mode=1777"]
    if read_only:
        args += ["--read-only", "--read-only-tmpfs=false"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for volume in volumes:
        args += ["--volume", volume]
    return [*args, image(name), *(command or [])]


@pytest.fixture(scope="session")
def built_images() -> None:
    """``scripts/images.sh build``: stand-in bases once, then every image (layer cache).
    TIDEMILL_IMAGES_PREBUILT=1 says they were just built (e.g. by hand) and skips the rebuild."""
    if os.environ.get("TIDEMILL_IMAGES_PREBUILT") == "1":
        return
    proc = subprocess.run(["bash", str(IMAGES_SH), "build"], capture_output=True, text=True,
                          timeout=5400)
    print(proc.stderr)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def writable_dir(prefix: str, owner: str) -> Path:
    """A host directory the container user owns (a volume in the pod)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    uid, gid = (int(x) for x in owner.split(":"))
    os.chown(path, uid, gid)
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The chart's in-cluster PostgreSQL: MLflow's backend store, the prediction log, Optuna."""
    with servers.postgres() as server:
        for database in ("mlflow", "predictions", "optuna"):
            server.create_database(database)
        yield server


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    """The chart's S3 store (s3.endpoint, s3.bucket ``tidemill``)."""
    with servers.seaweedfs() as store:
        store.make_bucket(BUCKET)
        yield store


@pytest.fixture(scope="session")
def mlflow_server(built_images: None, postgres: Postgres,
                  object_store: ObjectStore) -> Iterator[Container]:
    """The MLflow image with the chart's environment: PostgreSQL backend store, artifacts
    proxied (``--serve-artifacts``) to s3://<bucket>/mlflow on the S3 endpoint."""
    port = free_port()
    server = run_container("mlflow", user=TIDEMILL_UID, env={
        "MLFLOW_BACKEND_STORE_URI": postgres.url("mlflow"),
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
        "MLFLOW_SERVER_ALLOWED_HOSTS": f"localhost,localhost:*,127.0.0.1:{port}",
        "MLFLOW_S3_ENDPOINT_URL": object_store.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": object_store.access_key,
        "AWS_SECRET_ACCESS_KEY": object_store.secret_key,
        "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "2",
    }, url=f"http://127.0.0.1:{port}")
    try:
        server.wait_http("/health", timeout=240)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registered(mlflow_server: Container, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Versions 1 (nlinear) and 2 (seasonal naive) of ``REGISTERED``, trained on the host by the
    real pipeline and registered through the MLflow container (artifacts uploaded through it)."""
    root = tmp_path_factory.mktemp("images-train")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(small_config(REPO / "data" / "ETTh1.csv", "images-smoke",
                                                  REGISTERED)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    env["MLFLOW_TRACKING_URI"] = mlflow_server.url
    for algorithm in ("nlinear", "seasonal_naive"):
        proc = subprocess.run(
            [str(TIDEMILL), "train", "--config", str(config), "--home", str(root / "home"),
             "--trials", "1", "--algorithms", algorithm],
            cwd=root, env=env, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return mlflow_server.url


STORAGE_INITIALIZER = "localhost/tidemill-stand-in/storage-initializer:v0.21.0"  # scripts/images.sh


def storage_initializer_env(store: ObjectStore) -> dict[str, str]:
    """What KServe's webhook gives the storage initializer for the chart's predictor
    ServiceAccount (charts/tidemill/templates/predictor-serviceaccount.yaml): the annotations
    serving.kserve.io/s3-endpoint (scheme stripped), s3-usehttps ("0" for http://) and s3-region
    become S3_ENDPOINT, AWS_ENDPOINT_URL, S3_USE_HTTPS and AWS_REGION; the attached Secret gives
    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."""
    return {
        "S3_ENDPOINT": store.endpoint.removeprefix("http://"),
        "AWS_ENDPOINT_URL": store.endpoint, "S3_USE_HTTPS": "0", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key,
    }


@pytest.fixture(scope="session")
def model_dir(registered: str, object_store: ObjectStore,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 2's model directory as KServe lays it out at /mnt/models: its ``s3://`` storage
    URI (the proxied artifact location's bytes in the bucket, what the InferenceService's
    storageUri names) downloaded by KServe's storage initializer (``kserve_storage``'s
    ``Storage.download`` in a stand-in of its image) into an emptyDir-like directory."""
    from mlflow import MlflowClient

    source = MlflowClient(registered, registry_uri=registered).get_model_version_download_uri(
        REGISTERED, "2")
    assert source.startswith("mlflow-artifacts:/"), source
    storage_uri = f"s3://{BUCKET}/mlflow/{source.removeprefix('mlflow-artifacts:/').lstrip('/')}"
    target = tmp_path_factory.mktemp("images-model") / "model"
    target.mkdir()
    target.chmod(0o777)  # an emptyDir: writable by the init container's uid
    args = ["run", "--rm", "--network", "host", "--ulimit", "host", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--read-only", "--read-only-tmpfs=false",
            "--tmpfs", "/tmp:rw,mode=1777", "--volume", f"{target}:/mnt/models"]
    for key, value in storage_initializer_env(object_store).items():
        args += ["--env", f"{key}={value}"]
    proc = podman(*args, STORAGE_INITIALIZER, storage_uri, "/mnt/models", timeout=300)
    assert (target / "MLmodel").exists(), (sorted(p.name for p in target.iterdir()),
                                           proc.stdout[-3000:], proc.stderr[-3000:])
    return target
