"""The artifact store and the settings resolver, on a local directory and on a real S3 server
(SeaweedFS started here): round trips, atomic snapshots, errors that name the URL, and the
training stages writing only to the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines import artifact_store
from pipelines.artifact_store import ArtifactStoreError
from pipelines.data.snapshot import read_snapshot, write_snapshot
from pipelines.home import TidemillHome
from pipelines.settings import Settings
from pipelines.workflow import ingest, preprocess, run_config
from tests.integration.conftest import SMALL_CONFIG
from tests.servers import ObjectStore, free_port, seaweedfs

REPO = Path(__file__).resolve().parents[2]
SETTING_ENVS = ("TIDEMILL_ARTIFACT_STORE_URL", "MLFLOW_TRACKING_URI", "TIDEMILL_OPTUNA_STORAGE_URL",
                "TIDEMILL_PREDICTION_LOG_URL", "TIDEMILL_SPLIT_STATE_URL")


@pytest.fixture(scope="module")
def s3() -> Iterator[ObjectStore]:
    with seaweedfs() as store:
        store.make_bucket("tidemill")
        yield store


@pytest.fixture
def s3_env(s3: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://tidemill/t{time.time_ns()}"


def test_settings_default_to_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTING_ENVS:
        monkeypatch.delenv(name, raising=False)
    home = TidemillHome.resolve(tmp_path)
    s = Settings.resolve(home)
    assert s.artifact_store_url == str(home.root)
    assert s.store.url("runs", "r1") == f"{home.root}/runs/r1"
    assert s.mlflow_tracking_uri == home.mlflow_uri and s.mlflow_is_local
    assert s.optuna_storage_url == home.optuna_uri
    assert s.prediction_log_url == home.prediction_log_uri
    assert s.split_state_url == str(home.root / "serving" / "splits")
    assert s.split_file("etth1") == str(home.root / "serving" / "splits" / "etth1.json")
    assert s.split_file("../a b") == str(home.root / "serving" / "splits" / "%2E.%2Fa%20b.json")


def test_settings_from_environment_and_config(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"TIDEMILL_ARTIFACT_STORE_URL": "s3://b/p", "MLFLOW_TRACKING_URI": "http://m:5000",
           "TIDEMILL_OPTUNA_STORAGE_URL": "postgresql://o", "TIDEMILL_PREDICTION_LOG_URL":
           "postgresql+psycopg://l", "TIDEMILL_SPLIT_STATE_URL": "s3://b/splits"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings.resolve(tmp_path)
    assert (s.artifact_store_url, s.mlflow_tracking_uri, s.optuna_storage_url,
            s.prediction_log_url, s.split_state_url) == tuple(env.values())
    assert not s.mlflow_is_local
    cfg = run_config(_effective_config(tmp_path, tuning_storage="sqlite:///x.db",
                                       tracking="sqlite:///m.db"))
    with_cfg = Settings.resolve(tmp_path, cfg)  # the experiment config wins where it says
    assert (with_cfg.optuna_storage_url, with_cfg.mlflow_tracking_uri) == (
        "sqlite:///x.db", "sqlite:///m.db")


def _effective_config(tmp_path: Path, **overrides: str) -> str:
    raw = yaml.safe_load((REPO / "configs" / "etth1.yaml").read_text())
    raw["data"]["source"]["path"] = str(REPO / "data" / "ETTh1.csv")
    if "tuning_storage" in overrides:
        raw.setdefault("tuning", {})["storage"] = overrides["tuning_storage"]
    if "tracking" in overrides:
        raw.setdefault("mlflow", {})["tracking_uri"] = overrides["tracking"]
    return artifact_store.write_text(str(tmp_path / "cfg.yaml"), yaml.safe_dump(raw))


def _round_trip(root: str, tmp_path: Path) -> None:
    url = artifact_store.join(root, "a", "b.txt")
    assert artifact_store.write_text(url, "hello") == url
    assert artifact_store.read_text(url) == "hello" and artifact_store.exists(url)
    frame = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=5, freq="h"),
                          "y": [1.0, 2, 3, 4, 5]})
    pq = artifact_store.write_parquet(frame, artifact_store.join(root, "f.parquet"))
    pd.testing.assert_frame_equal(artifact_store.read_parquet(pq), frame)
    local = tmp_path / "dir"
    (local / "sub").mkdir(parents=True)
    (local / "x.json").write_text("{}")
    (local / "sub" / "y.bin").write_bytes(b"\x00\x01")
    remote = artifact_store.put_dir(local, artifact_store.join(root, "bundle"))
    with artifact_store.local_copy(remote) as copy:
        assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) \
            == ["sub/y.bin", "x.json"]
        assert (copy / "sub" / "y.bin").read_bytes() == b"\x00\x01"
    missing = artifact_store.join(root, "nope.txt")
    with pytest.raises(FileNotFoundError, match=f"{missing}: not found in the artifact store"):
        artifact_store.read_text(missing)
    snap = write_snapshot(frame, artifact_store.join(root, "snaps"))
    assert snap.url.startswith(root) and snap.url.endswith(f"snapshot-{snap.sha256[:12]}.parquet")
    pd.testing.assert_frame_equal(read_snapshot(snap.url, snap.sha256), frame)


def test_round_trip_on_local_directory(tmp_path: Path) -> None:
    _round_trip(str(tmp_path / "store"), tmp_path)
    assert not [p for p in (tmp_path / "store").rglob(".tmp-*")]  # no temporary left over


def test_round_trip_on_s3(s3_env: str, tmp_path: Path) -> None:
    _round_trip(s3_env, tmp_path)


def test_unreachable_store_names_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    url = "s3://tidemill/run/config.yaml"
    started = time.monotonic()
    with pytest.raises(ArtifactStoreError, match=f"trying to write {url}"):
        artifact_store.write_text(url, "x")
    assert time.monotonic() - started < 60  # fails within the configured retries


def test_stages_write_only_to_the_store(s3_env: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ingest and preprocess on s3: their XCom values are s3 URLs; the home stays empty."""
    home = TidemillHome.resolve(tmp_path / "home")
    monkeypatch.setenv("TIDEMILL_ARTIFACT_STORE_URL", s3_env)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL_CONFIG))
    run_url = Settings.resolve(home).store.url("runs", "r1")
    ingested = ingest(config, run_url, ["seasonal_naive"], 1, 12)
    prepared = preprocess(ingested, run_url)
    for key in ("config", "snapshot", "prepared", "preprocessor"):
        assert prepared[key].startswith(f"{s3_env}/runs/r1/"), (key, prepared[key])
    assert run_config(prepared["config"]).horizon == 12
    assert len(read_snapshot(prepared["snapshot"], prepared["sha256"])) == 2400
    assert artifact_store.read_parquet(prepared["prepared"])["split"].nunique() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "small.yaml"]
    assert list(home.root.iterdir()) == []


def test_config_and_data_by_url(s3_env: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A config in the store naming its data relative to itself: ingest reads both from S3 (a
    task on another machine needs no copy of either); a missing one is an error naming its URL."""
    monkeypatch.setenv("TIDEMILL_ARTIFACT_STORE_URL", s3_env)
    monkeypatch.chdir(tmp_path)
    rows = (REPO / "data" / "ETTh1.csv").read_text().splitlines(keepends=True)[:801]
    artifact_store.write_text(artifact_store.join(s3_env, "data", "etth1-800.csv"), "".join(rows))
    raw = {**SMALL_CONFIG, "data": {**SMALL_CONFIG["data"], "rows": {"start": 0, "stop": 800},
                                    "source": {"kind": "csv", "path": "data/etth1-800.csv"}},
           "split": {"val_size": 100, "test_size": 100}}
    config_url = artifact_store.write_text(artifact_store.join(s3_env, "cfg.yaml"),
                                           yaml.safe_dump(raw))
    from pipelines.config import ConfigError, load_config
    from pipelines.data.validate import DataValidationError

    assert load_config(config_url).data.source.path == f"{s3_env}/data/etth1-800.csv"
    ingested = ingest(config_url, artifact_store.join(s3_env, "runs", "r2"), ["seasonal_naive"],
                      1, 12)
    snapshot = read_snapshot(ingested["snapshot"], ingested["sha256"])
    assert len(snapshot) == 800 and snapshot["y"].iloc[0] == pytest.approx(30.531)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    with pytest.raises(ConfigError, match=f"config file not found: {s3_env}/nope.yaml"):
        load_config(f"{s3_env}/nope.yaml")
    raw["data"]["source"]["path"] = "data/missing.csv"
    missing = artifact_store.write_text(artifact_store.join(s3_env, "missing.yaml"),
                                        yaml.safe_dump(raw))
    with pytest.raises(DataValidationError, match=f"cannot read {s3_env}/data/missing.csv"):
        ingest(missing, artifact_store.join(s3_env, "runs", "r3"), ["seasonal_naive"], 1, 12)
    assert not artifact_store.exists(artifact_store.join(s3_env, "runs", "r3"))


def test_tabular_config_and_dataset_by_url(s3_env: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform API's training job: a Parquet dataset and a tabular config, both in S3."""
    from pipelines.tabular.workflow import ingest as tabular_ingest
    from pipelines.tabular.workflow import prepare as tabular_prepare

    monkeypatch.chdir(tmp_path)
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", nrows=600)
    dataset = artifact_store.write_parquet(frame, artifact_store.join(s3_env, "ds", "a.parquet"))
    raw = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    raw["data"]["source"] = {"kind": "parquet", "path": dataset}
    config_url = artifact_store.write_text(artifact_store.join(s3_env, "jobs", "cfg.yaml"),
                                           yaml.safe_dump(raw))
    run_url = artifact_store.join(s3_env, "runs", "tabular")
    prepared = tabular_prepare(tabular_ingest(config_url, run_url, ["logistic_regression"], 1),
                               run_url)
    assert prepared["rows"] == 600 and sum(prepared["parts"].values()) == 600
    assert prepared["config"].startswith(run_url) and prepared["prepared"].startswith(run_url)
    assert list(tmp_path.iterdir()) == []


def test_split_intent_is_an_object_in_the_store(s3_env: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On Kubernetes a split change's intent record (to undo an interrupted change) is an object
    in the artifact store: a pod with another home (the next control API, a promotion task)
    finds, reads and clears what another wrote; neither home holds anything."""
    from serving.split import KubernetesBackend, backend_from_env

    monkeypatch.setenv("TIDEMILL_ARTIFACT_STORE_URL", s3_env)
    monkeypatch.setenv("TIDEMILL_SPLIT_BACKEND", "kubernetes")
    monkeypatch.setenv("TIDEMILL_ISVC_NAME", "fc")
    pod_a = backend_from_env(TidemillHome.resolve(tmp_path / "a"))
    pod_b = backend_from_env(TidemillHome.resolve(tmp_path / "b"))
    assert isinstance(pod_a, KubernetesBackend)
    assert pod_a.intent.url == pod_b.intent.url == f"{s3_env}/serving/fc.intent.json"
    record = {"model_name": "m", "aliases": {"champion": "1", "challenger": None},
              "split": None, "recorded_at": 1.0}
    assert not pod_b.intent.exists()
    pod_a.intent.write(record)
    assert pod_b.intent.exists() and pod_b.intent.read() == record
    pod_b.intent.clear()
    pod_b.intent.clear()  # nothing to clear: no error
    assert not pod_a.intent.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_split_change_is_refused_when_its_intent_cannot_be_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the store unreachable a split change is refused (503) before anything moves."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.registry import register_version, use_store
    from serving.split import IntentRecord, LocalSplitBackend, Split, SplitControl, SplitError

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return model_input

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_store(uri)
    client = MlflowClient(uri, registry_uri=uri)
    mlflow.set_experiment(experiment_id=client.create_experiment(
        "intent", artifact_location=(tmp_path / "artifacts").as_uri()))
    for _ in range(2):
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
        register_version("m", info.model_uri, run.info.run_id, {}, client)
    backend = LocalSplitBackend(tmp_path / "serving" / "split.json")
    split_before = Split("models:/m/1", "models:/m/2", 10)
    backend.apply(split_before)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    backend.intent = IntentRecord("s3://tidemill/serving/fc.intent.json")  # as on Kubernetes
    with pytest.raises(SplitError, match="split change record s3://tidemill/serving/") as refused:
        SplitControl(client, "m", backend).retire_challenger()
    assert refused.value.status == 503
    aliases = client.get_registered_model("m").aliases
    assert {a: str(v) for a, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    assert backend.get() == split_before
