"""The platform API's FastAPI app: datasets, data operations and training jobs.

    uvicorn serving.platform_api.app:app --host 127.0.0.1 --port 8001     (OpenAPI at /docs)

Configuration: ``serving.platform_api.settings``. Every write needs ``Authorization: Bearer
<token>``, the control API's token (declared in the OpenAPI document as the ``HTTPBearer`` scheme).
A data operation reads one dataset version and writes a new one: the source never changes.
Bad input is a 4xx whose message names the id, column, field or limit, and writes nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pipelines.config import SearchParam
from pipelines.tabular.config import (
    FeatureSelectionConfig,
    OutlierConfig,
    SplitConfig,
)
from serving.platform_api import compare as compare_mod
from serving.platform_api import datasets as ops
from serving.platform_api import jobs as jobs_mod
from serving.platform_api import store
from serving.platform_api.airflow import AirflowClient, AirflowUnavailable
from serving.platform_api.db import as_utc, datasets, jobs, new_id, open_engine, utcnow
from serving.platform_api.models import add_model_routes
from serving.platform_api.settings import PlatformSettings

Task = Literal["classification", "regression", "anomaly"]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
BEARER = HTTPBearer(auto_error=False, description="TIDEMILL_CONTROL_TOKEN")


# ----- request bodies --------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = {"extra": "forbid"}


class CleanBody(_Body):
    dataset_id: str = Field(description="the dataset version to read (never changed)")
    numeric_imputation: Literal["none", "mean", "median", "drop", "ffill", "bfill"] = "median"
    categorical_imputation: Literal["none", "mode", "drop", "ffill", "bfill"] = "mode"
    outliers: OutlierConfig = OutlierConfig()
    drop_duplicates: bool = True
    drop_columns: list[str] = Field([], max_length=1000)


class SelectBody(_Body):
    dataset_id: str
    task: Literal["classification", "regression"]
    method: Literal["correlation", "mutual_info", "rfe", "tree_importance", "statistical"]
    n_features: int | None = Field(None, ge=1, le=10_000, description="default: half")
    keep_columns: list[str] = Field([], max_length=1000, description="kept as they are (ids)")
    seed: int = 42


class SplitBody(_Body):
    dataset_id: str
    task: Task
    val_size: float = Field(0.2, gt=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    stratify: bool = True
    seed: int = 42
    time_column: str | None = Field(None, description="split chronologically by this column")


class CompareBody(_Body):
    dataset_id: str
    task: Task
    algorithms: list[str] = Field(min_length=1, max_length=20)
    target_column: str | None = Field(None, description="default: the dataset's target")
    hyperparameters: dict[str, dict[str, Any]] = Field({}, description="fixed, per algorithm")
    metric: str | None = None
    cv_method: Literal["kfold", "stratified", "timeseries"] = "stratified"
    cv_folds: int = Field(3, ge=2, le=20)
    id_columns: list[str] = Field([], max_length=1000)
    time_column: str | None = None
    scaling: Literal["standard", "minmax", "robust", "none"] = "standard"


class TrainBody(_Body):
    dataset_id: str
    task: Task
    algorithms: list[str] = Field(min_length=1, max_length=20)
    target_column: str | None = Field(None, description="default: the dataset's target")
    hyperparameters: dict[str, dict[str, Any]] = Field({}, description="fixed, per algorithm")
    search_spaces: dict[str, dict[str, SearchParam]] = Field({}, description="per algorithm")
    n_trials: int = Field(5, ge=1, le=500)
    tuning_method: Literal["tpe", "grid", "random"] = "tpe"
    metric: str | None = None
    split: SplitConfig = SplitConfig()
    scaling: Literal["standard", "minmax", "robust", "none"] = "standard"
    feature_selection: FeatureSelectionConfig = FeatureSelectionConfig()
    early_stopping_rounds: int = Field(30, ge=1, le=10_000)
    cv_method: Literal["kfold", "stratified", "timeseries"] = "stratified"
    cv_folds: int = Field(3, ge=2, le=20)
    id_columns: list[str] = Field([], max_length=1000)
    time_column: str | None = None
    registered_model_name: str | None = Field(None, pattern=NAME)


# ----- views -----------------------------------------------------------------------------------
def _iso(value: Any) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value is not None else None


def dataset_view(row: dict[str, Any]) -> dict[str, Any]:
    profile = row["profile"]
    return {
        "id": row["id"], "name": row["name"], "version": row["version"],
        "parent_id": row["parent_id"], "operation": row["operation"], "params": row["params"],
        "target_column": row["target_column"], "source_filename": row["source_filename"],
        "url": row["url"], "rows": row["rows"],
        "columns": [c["name"] for c in profile["columns"]],
        "dtypes": {c["name"]: c["dtype"] for c in profile["columns"]},
        "missing": {c["name"]: c["missing"] for c in profile["columns"]},
        "stats": {c["name"]: c["stats"] for c in profile["columns"] if "stats" in c},
        "top_values": {c["name"]: c["top"] for c in profile["columns"] if "top" in c},
        "created_at": _iso(row["created_at"]),
    }  # fmt: skip


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": row["id"], "kind": row["kind"], "dataset_id": row["dataset_id"],
        "status": row["status"], "dag_id": row["dag_id"], "dag_run_id": row["dag_run_id"],
        "progress": row["progress"] or {"fraction": 0.0}, "error": row["error"],
        "created_at": _iso(row["created_at"]), "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]), "request": row["request"],
        **(row["result"] or {}),
    }  # fmt: skip


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    settings = settings or PlatformSettings.from_env()
    state: dict[str, Any] = {}

    def engine() -> Engine:
        if "engine" not in state:
            state["engine"] = open_engine(settings.db_url)
        return state["engine"]

    def airflow() -> AirflowClient:
        if "airflow" not in state:
            state["airflow"] = AirflowClient(settings)
        return state["airflow"]

    def authorized(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
    ) -> None:
        challenge = {"WWW-Authenticate": "Bearer"}
        given = creds.credentials if creds else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers=challenge)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        engine()
        yield
        if "airflow" in state:
            state["airflow"].close()
        state["engine"].dispose()

    app = FastAPI(title="Tidemill platform API", version="1.0", lifespan=lifespan,
                  description=__doc__)  # fmt: skip
    write = [Depends(authorized)]

    def load(dataset_id: str) -> dict[str, Any]:
        with engine().connect() as conn:
            row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
        if row is None:
            raise HTTPException(404, f"no dataset {dataset_id!r}")
        return dict(row._mapping)

    def save(
        frame: Any, name: str, operation: str, params: dict[str, Any], target: str | None,
        parent: str | None = None, filename: str | None = None,
    ) -> dict[str, Any]:
        """Write the file, then its row; a failed insert removes nothing but the new file."""
        dataset_id = new_id()
        url = store.write_parquet(frame, store.dataset_url(settings.store_url, name, dataset_id))
        for _attempt in range(5):
            try:
                with engine().begin() as conn:
                    version = (conn.execute(select(func.max(datasets.c.version))
                                            .where(datasets.c.name == name)).scalar() or 0) + 1
                    row = {
                        "id": dataset_id, "name": name, "version": version, "parent_id": parent,
                        "operation": operation, "params": params, "target_column": target,
                        "url": url, "source_filename": filename, "rows": len(frame),
                        "profile": ops.profile(frame), "created_at": utcnow(),
                    }  # fmt: skip
                    conn.execute(insert(datasets), [row])
            except IntegrityError:  # another version of ``name`` took this number
                continue
            return row
        store.remove(url)
        raise HTTPException(409, f"dataset {name!r}: concurrent uploads, try again")

    def derived(source: dict[str, Any], operation: str, params: dict[str, Any],
                result: ops.Result) -> dict[str, Any]:  # fmt: skip
        row = save(result.frame, source["name"], operation, params, source["target_column"],
                   parent=source["id"])  # fmt: skip
        return {"id": row["id"], "dataset": dataset_view(row), "summary": result.summary}

    def frame_of(row: dict[str, Any]) -> Any:
        return store.read_parquet(row["url"])

    def checked(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ops.DatasetError as exc:
            raise HTTPException(exc.status, str(exc)) from exc

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # ----- datasets ----------------------------------------------------------------------------
    @app.post("/api/ml/datasets/upload", tags=["datasets"], dependencies=write, status_code=201)
    def upload(
        file: Annotated[UploadFile, File(description="CSV, Excel (.xlsx) or Parquet")],
        name: Annotated[str, Form(pattern=NAME, description="dataset name")],
        target_column: Annotated[str | None, Form(max_length=200)] = None,
    ) -> dict[str, Any]:
        """A new dataset (or a new version of ``name``) from an uploaded file."""
        limit = settings.max_upload_bytes
        data = file.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"file {file.filename!r} is larger than the upload limit "
                                     f"of {limit} bytes ({limit / 2**20:g} MiB, "
                                     "TIDEMILL_MAX_UPLOAD_MB)")  # fmt: skip
        filename = file.filename or "upload"
        frame = checked(ops.read_upload, filename, data)
        if target_column:
            checked(ops.check_columns, frame, [target_column], "target_column")
        row = save(frame, name, "upload", {}, target_column or None, filename=filename)
        return dataset_view(row)

    @app.get("/api/ml/datasets", tags=["datasets"])
    def list_datasets(name: str | None = None) -> dict[str, Any]:
        """Every dataset version, newest first (``name`` filters)."""
        query = select(datasets).order_by(datasets.c.created_at.desc())
        if name is not None:
            query = query.where(datasets.c.name == name)
        with engine().connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return {"datasets": [dataset_view(r) for r in rows]}

    @app.get("/api/ml/datasets/{dataset_id}", tags=["datasets"])
    def get_dataset(dataset_id: str) -> dict[str, Any]:
        """Rows, columns, dtypes, missing values, numeric statistics and lineage."""
        return dataset_view(load(dataset_id))

    # ----- data operations ---------------------------------------------------------------------
    @app.post("/api/ml/data/clean", tags=["data"], dependencies=write, status_code=201)
    def clean(body: CleanBody) -> dict[str, Any]:
        """Drop columns, duplicates and unlabelled rows; impute; handle outliers."""
        source = load(body.dataset_id)
        result = checked(
            ops.clean, frame_of(source), source["target_column"], body.numeric_imputation,
            body.categorical_imputation, body.outliers, body.drop_duplicates, body.drop_columns,
        )  # fmt: skip
        return derived(source, "clean", body.model_dump(mode="json"), result)

    @app.post("/api/ml/data/select-features", tags=["data"], dependencies=write, status_code=201)
    def select_features(body: SelectBody) -> dict[str, Any]:
        """Keep the best ``n_features`` feature columns by ``method`` (plus target and ids)."""
        source = load(body.dataset_id)
        if source["target_column"] is None:
            raise HTTPException(422, f"dataset {source['id']} has no target column to select "
                                     "features for")  # fmt: skip
        result = checked(
            ops.select_features, frame_of(source), source["url"],
            source["target_column"], body.task, body.method, body.n_features,
            body.keep_columns, body.seed,
        )  # fmt: skip
        return derived(source, "select-features", body.model_dump(mode="json"), result)

    @app.post("/api/ml/data/split", tags=["data"], dependencies=write, status_code=201)
    def split(body: SplitBody) -> dict[str, Any]:
        """A ``__split__`` column (train/val/test); training reuses these parts."""
        try:
            split_cfg = SplitConfig(val_size=body.val_size, test_size=body.test_size,
                                    stratify=body.stratify, seed=body.seed)  # fmt: skip
        except ValueError as exc:
            raise HTTPException(422, f"split: {exc}") from exc
        source = load(body.dataset_id)
        result = checked(ops.split, frame_of(source), source["url"],
                         source["target_column"], body.task, split_cfg, body.time_column)
        params = {**body.model_dump(mode="json"), "split": split_cfg.model_dump(mode="json")}
        return derived(source, "split", params, result)

    # ----- comparing and training ------------------------------------------------------------
    @app.post("/api/ml/models/compare", tags=["models"], dependencies=write)
    def compare(body: CompareBody) -> dict[str, Any]:
        """Cross-validated mean ± std of the metric per algorithm (fixed parameters), ranked;
        runs in the request (small data; tune in a training job for more)."""
        source = load(body.dataset_id)
        train_like = TrainBody(**body.model_dump(), n_trials=1)
        config = checked(jobs_mod.experiment, source, train_like, "compare")
        result = checked(compare_mod.compare, frame_of(source), config)
        return {"dataset_id": source["id"], **result}

    # ----- training jobs -----------------------------------------------------------------------
    @app.post("/api/ml/models/train", tags=["models"], dependencies=write, status_code=202)
    def train(body: TrainBody) -> dict[str, Any]:
        """Start a ``tabular_training`` DAG run on a dataset version; poll the job."""
        return start_job(body, "train")

    @app.post("/api/ml/models/tune", tags=["models"], dependencies=write, status_code=202)
    def tune(body: TrainBody) -> dict[str, Any]:
        """A training job whose every algorithm has a search space: Optuna (``tuning_method``
        tpe, grid or random) for ``n_trials`` per algorithm, cross-validated; poll it at
        ``/api/ml/models/train/{job_id}`` (each candidate's tuned params and CV score)."""
        untuned = [a for a in body.algorithms if not body.search_spaces.get(a)]
        if untuned:
            raise HTTPException(422, f"search_spaces: algorithm(s) {untuned} have no search "
                                     "space to tune")  # fmt: skip
        return start_job(body, "tune")

    def start_job(body: TrainBody, kind: str) -> dict[str, Any]:
        source = load(body.dataset_id)
        job_id = new_id()
        config = checked(jobs_mod.experiment, source, body, job_id)
        config_url = store.job_config_url(settings.store_url, job_id)
        store.write_text(config_url, jobs_mod.config_yaml(config))
        run_id = f"platform-{job_id}"
        conf = {"config": config_url, "algorithms": [], "n_trials": None,
                "reason": f"platform API job {job_id}"}  # fmt: skip
        try:
            airflow().trigger(jobs_mod.DAG_ID, run_id, conf)
        except AirflowUnavailable as exc:
            store.remove(config_url)
            raise HTTPException(503, str(exc)) from exc
        row = {
            "id": job_id, "kind": kind, "dataset_id": source["id"],
            "request": body.model_dump(mode="json"), "config_url": config_url,
            "dag_id": jobs_mod.DAG_ID, "dag_run_id": run_id, "status": "pending",
            "progress": {"fraction": 0.0}, "created_at": utcnow(),
        }  # fmt: skip
        with engine().begin() as conn:
            conn.execute(insert(jobs), [row])
        return job_view({**row, "result": None, "error": None, "started_at": None,
                         "finished_at": None})  # fmt: skip

    @app.get("/api/ml/models/train/{job_id}", tags=["models"])
    def train_status(job_id: str) -> dict[str, Any]:
        """Status (pending, running, completed, failed), timestamps, progress; on completion
        the evaluation, each candidate's MLflow run and history, the model version."""
        with engine().connect() as conn:
            found = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if found is None:
            raise HTTPException(404, f"no training job {job_id!r}")
        row = dict(found._mapping)
        if row["status"] in ("pending", "running"):
            try:
                changes = jobs_mod.refresh(row, airflow(), settings.tracking_uri)
            except AirflowUnavailable as exc:
                return {**job_view(row), "note": f"status not refreshed: {exc}"}
            with engine().begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(**changes))
            row.update(changes)
        return job_view(row)

    add_model_routes(app, settings, write)
    return app


app = create_app()
