"""The Airflow image: the DAGs import, and a forecast_training run's tasks run inside it
against the MLflow container (``airflow dags test``: the tasks in the container's process).

The chart (charts/airflow-values.yaml) runs it as uid 50000, group 0, with the Tidemill
environment below (artifact store on S3, Optuna storage and prediction log in PostgreSQL); its
root filesystem stays writable (the Airflow chart's default). The metadata database is SQLite
here (the Airflow chart's own PostgreSQL there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import s3fs
import yaml
from mlflow import MlflowClient

from tests.images.conftest import (
    AIRFLOW_UID,
    BUCKET,
    REPO,
    Container,
    podman,
    run_args,
    small_config,
)
from tests.servers import ObjectStore, Postgres

DAG_REGISTERED = "images-airflow-forecaster"
CONFIG = "/opt/tidemill/configs/images-small.yaml"


@pytest.fixture(scope="module")
def airflow_run(built_images: None, mlflow_server: Container, object_store: ObjectStore,
                postgres: Postgres, tmp_path_factory) -> str:
    config = tmp_path_factory.mktemp("images-airflow") / "small.yaml"
    config.write_text(yaml.safe_dump(small_config(
        Path("/opt/tidemill/data/ETTh1.csv"), "images-airflow", DAG_REGISTERED)))
    config.chmod(0o644)
    conf = json.dumps({"config": CONFIG, "algorithms": ["seasonal_naive"],
                       "reason": "image smoke test"})
    # the DAG folder parsed as the dag processor parses it (`airflow dags list-import-errors`
    # without --local reads the errors a dag processor stored: none ran here, so it says [])
    # and the files the DAGs' trigger forms default to (configs, feature CSVs) exist there
    parse = ("import json, os; from airflow.dag_processing.dagbag import DagBag; b = DagBag(); "
             "paths = sorted({v for d in b.dags.values() for v in d.params.dump().values() "
             "if isinstance(v, str) and v.startswith('/')}); "
             "print(json.dumps({'dags': sorted(b.dag_ids), 'errors': b.import_errors, "
             "'defaults': paths, 'missing': [p for p in paths if not os.path.exists(p)]}))")
    script = ("set -e; airflow db migrate > /tmp/migrate.log 2>&1 || { cat /tmp/migrate.log; "
              f"exit 1; }}; echo '== import errors'; python -c \"{parse}\"; "
              f"echo '== dags test'; airflow dags test forecast_training -c '{conf}'")
    proc = podman("run", "--rm", *run_args("airflow", user=AIRFLOW_UID, env={
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "TIDEMILL_ARTIFACT_STORE_URL": f"s3://{BUCKET}/tidemill",
        "AWS_ENDPOINT_URL": object_store.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": object_store.access_key,
        "AWS_SECRET_ACCESS_KEY": object_store.secret_key,
        "TIDEMILL_OPTUNA_STORAGE_URL": postgres.url("optuna"),
        "TIDEMILL_PREDICTION_LOG_URL": postgres.url("predictions"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/airflow.db",
        "AIRFLOW_VAR_MLFLOW_EXPERIMENT": "images-airflow",
        "PYTHONWARNINGS": "ignore",
    }, command=["bash", "-c", script], volumes=[f"{config}:{CONFIG}:ro"], read_only=False),
        timeout=1200, check=False)
    output = proc.stdout + proc.stderr
    (tmp_path_factory.getbasetemp() / "airflow-run.log").write_text(output)
    assert proc.returncode == 0, output[-8000:]
    return output


def test_dags_import_without_errors(airflow_run: str) -> None:
    section = airflow_run.split("== import errors")[1].split("== dags test")[0].strip()
    parsed = json.loads(section.splitlines()[-1])
    assert parsed["errors"] == {}, section
    assert parsed["dags"] == sorted(p.stem for p in (REPO / "dags").glob("*.py")), section
    assert parsed["missing"] == [], section
    assert "/opt/tidemill/data/ai4i2020.csv" in parsed["defaults"], section


def test_training_dag_runs_in_the_image(airflow_run: str, mlflow_server: Container,
                                        object_store: ObjectStore) -> None:
    assert f"register: {DAG_REGISTERED} version 1" in airflow_run, airflow_run[-4000:]
    fs = s3fs.S3FileSystem(key=object_store.access_key, secret=object_store.secret_key,
                           client_kwargs={"endpoint_url": object_store.endpoint})
    assert fs.find(f"{BUCKET}/tidemill"), "the tasks wrote nothing to the artifact store"
    client = MlflowClient(mlflow_server.url)
    version = client.get_model_version(DAG_REGISTERED, "1")
    assert version.tags["tidemill.algorithm"] == "seasonal_naive"
    assert sorted(version.aliases) == ["challenger", "champion"]
