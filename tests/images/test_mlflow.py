"""The MLflow image: PostgreSQL backend store, artifacts proxied to S3 (SeaweedFS)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import mlflow
import s3fs
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from tests.images.conftest import BUCKET, Container
from tests.servers import ObjectStore, Postgres


def test_mlflow_stores_runs_in_postgres_and_serves_artifacts(
    mlflow_server: Container, postgres: Postgres, object_store: ObjectStore, tmp_path: Path
) -> None:
    assert httpx.get(f"{mlflow_server.url}/health").text.strip() == "OK"
    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(f"images-artifacts-{uuid.uuid4().hex[:6]}")
    run = client.create_run(experiment)
    note = tmp_path / "note.txt"
    note.write_text("served through the MLflow container\n")
    client.log_artifact(run.info.run_id, str(note), "notes")
    assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")

    # The bytes landed in the artifacts destination, s3://<bucket>/mlflow.
    fs = s3fs.S3FileSystem(key=object_store.access_key, secret=object_store.secret_key,
                           client_kwargs={"endpoint_url": object_store.endpoint})
    stored = [k for k in fs.find(f"{BUCKET}/mlflow")
              if run.info.run_id in k and k.endswith("notes/note.txt")]
    assert len(stored) == 1 and fs.cat(stored[0]).decode() == note.read_text()
    # ... and come back through the server's artifact proxy.
    fetched = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                  artifact_path="notes/note.txt",
                                                  dst_path=str(tmp_path / "back"),
                                                  tracking_uri=mlflow_server.url)
    assert Path(fetched).read_text() == note.read_text()
    # The run is a row of the PostgreSQL backend store.
    engine = create_engine(postgres.url("mlflow"))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT experiment_id FROM runs WHERE run_uuid = :r"),
                            {"r": run.info.run_id}).all()
    engine.dispose()
    assert [str(r[0]) for r in rows] == [experiment]
