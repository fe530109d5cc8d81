"""Python client of the Tidemill platform API (httpx), for notebooks and scripts.

    from tidemill.client import TidemillClient
    api = TidemillClient("http://127.0.0.1:8001", token="...")
    ds = api.upload_dataset("data/ai4i2020.csv", name="ai4i", target_column="Machine failure")
    job = api.train(ds.id, task="classification", algorithms=["random_forest"], n_trials=2)
    job = api.wait(job.job_id)                # a progress bar; raises JobFailed with the reason
    job.model, job.evaluation                  # registered version; val/test metrics

Every method raises ``ApiError`` (HTTP status and the server's message, which names the bad
id, column, field or limit) when the API refuses the request.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

Task = Literal["classification", "regression", "anomaly"]
TOKEN_ENV = "TIDEMILL_CONTROL_TOKEN"
URL_ENV = "TIDEMILL_API_URL"
DEFAULT_URL = "http://127.0.0.1:8001"


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class JobFailed(RuntimeError):
    """A job whose DAG run failed; ``job.error`` says why."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job_id} failed: {job.error}")
        self.job = job


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    version: int
    rows: int
    columns: list[str]
    dtypes: dict[str, str]
    missing: dict[str, int]
    stats: dict[str, dict[str, float | None]]
    target_column: str | None
    parent_id: str | None
    operation: str
    params: dict[str, Any]
    url: str
    created_at: str
    summary: dict[str, Any] = field(default_factory=dict)  # what an operation changed

    @classmethod
    def of(cls, data: dict[str, Any], summary: dict[str, Any] | None = None) -> Dataset:
        keys = cls.__dataclass_fields__.keys() - {"summary"}
        return cls(**{k: data.get(k) for k in keys}, summary=summary or {})


@dataclass(frozen=True)
class Job:
    job_id: str
    status: Literal["pending", "running", "completed", "failed"]
    dataset_id: str
    dag_id: str
    dag_run_id: str | None
    progress: dict[str, Any]
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    model: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Job:
        keys = cls.__dataclass_fields__.keys()
        return cls(**{k: data[k] for k in keys if k in data})

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed")


class TidemillClient:
    """``url`` default ``$TIDEMILL_API_URL`` or http://127.0.0.1:8001; ``token`` default
    ``$TIDEMILL_CONTROL_TOKEN`` (needed by every write)."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 120.0) -> None:  # fmt: skip
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url or os.environ.get(URL_ENV) or DEFAULT_URL,
                                  headers=headers, timeout=timeout)  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TidemillClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise ApiError(resp.status_code, detail)
        return resp.json()

    # ----- datasets ----------------------------------------------------------------------------
    def upload_dataset(self, source: str | Path | Any, name: str,
                       target_column: str | None = None) -> Dataset:  # fmt: skip
        """Upload a CSV / Excel / Parquet file, or a pandas DataFrame (sent as Parquet)."""
        if isinstance(source, str | Path):
            path = Path(source)
            filename, content = path.name, path.read_bytes()
        else:
            buffer = io.BytesIO()
            source.to_parquet(buffer, index=False)
            filename, content = f"{name}.parquet", buffer.getvalue()
        form = {"name": name, **({"target_column": target_column} if target_column else {})}
        data = self._call("POST", "/api/ml/datasets/upload", data=form,
                          files={"file": (filename, content)})  # fmt: skip
        return Dataset.of(data)

    def dataset(self, dataset_id: str) -> Dataset:
        return Dataset.of(self._call("GET", f"/api/ml/datasets/{dataset_id}"))

    def datasets(self, name: str | None = None) -> list[Dataset]:
        params = {"name": name} if name else {}
        data = self._call("GET", "/api/ml/datasets", params=params)
        return [Dataset.of(d) for d in data["datasets"]]

    def _operation(self, path: str, body: dict[str, Any]) -> Dataset:
        data = self._call("POST", path, json={k: v for k, v in body.items() if v is not None})
        return Dataset.of(data["dataset"], data["summary"])

    def clean(self, dataset_id: str, *, numeric_imputation: str = "median",
              categorical_imputation: str = "mode", outliers: dict[str, Any] | None = None,
              drop_duplicates: bool = True, drop_columns: list[str] | None = None) -> Dataset:
        """A cleaned new version (``summary`` says what changed)."""
        return self._operation("/api/ml/data/clean", {
            "dataset_id": dataset_id, "numeric_imputation": numeric_imputation,
            "categorical_imputation": categorical_imputation, "outliers": outliers,
            "drop_duplicates": drop_duplicates, "drop_columns": drop_columns,
        })  # fmt: skip

    def select_features(self, dataset_id: str, *, task: str, method: str,
                        n_features: int | None = None, keep_columns: list[str] | None = None,
                        seed: int = 42) -> Dataset:  # fmt: skip
        return self._operation("/api/ml/data/select-features", {
            "dataset_id": dataset_id, "task": task, "method": method, "n_features": n_features,
            "keep_columns": keep_columns, "seed": seed,
        })  # fmt: skip

    def split(self, dataset_id: str, *, task: Task, val_size: float = 0.2,
              test_size: float = 0.2, stratify: bool = True, seed: int = 42,
              time_column: str | None = None) -> Dataset:  # fmt: skip
        return self._operation("/api/ml/data/split", {
            "dataset_id": dataset_id, "task": task, "val_size": val_size,
            "test_size": test_size, "stratify": stratify, "seed": seed,
            "time_column": time_column,
        })  # fmt: skip

    # ----- comparing and training ------------------------------------------------------------
    def compare(self, dataset_id: str, *, task: Task, algorithms: list[str],
                **options: Any) -> dict[str, Any]:  # fmt: skip
        """Cross-validated mean ± std of the metric per algorithm, best first; ``options``:
        target_column, hyperparameters, metric, cv_method, cv_folds, id_columns, ..."""
        body = {"dataset_id": dataset_id, "task": task, "algorithms": algorithms, **options}
        return self._call("POST", "/api/ml/models/compare", json=body)

    # ----- training jobs -----------------------------------------------------------------------
    def train(self, dataset_id: str, *, task: Task, algorithms: list[str], **options: Any) -> Job:
        """Start a training job; ``options``: the other fields of ``POST /api/ml/models/train``
        (target_column, hyperparameters, search_spaces, n_trials, tuning_method, metric, split,
        scaling, feature_selection, early_stopping_rounds, cv_method, cv_folds, ...)."""
        body = {"dataset_id": dataset_id, "task": task, "algorithms": algorithms, **options}
        return Job.of(self._call("POST", "/api/ml/models/train", json=body))

    def tune(self, dataset_id: str, *, task: Task, algorithms: list[str],
             search_spaces: dict[str, dict[str, Any]], **options: Any) -> Job:
        """A training job that tunes every algorithm over its search space (Optuna TPE, grid
        or random: ``tuning_method``; ``n_trials`` per algorithm); wait for it like ``train``."""
        body = {"dataset_id": dataset_id, "task": task, "algorithms": algorithms,
                "search_spaces": search_spaces, **options}  # fmt: skip
        return Job.of(self._call("POST", "/api/ml/models/tune", json=body))

    def job(self, job_id: str) -> Job:
        return Job.of(self._call("GET", f"/api/ml/models/train/{job_id}"))

    def wait(self, job_id: str, *, timeout: float = 3600.0, poll: float = 2.0,
             progress: bool = True) -> Job:  # fmt: skip
        """Poll until the job completes (returned) or fails (``JobFailed`` with the reason);
        a tqdm progress bar shows the fraction of finished DAG tasks."""
        from tqdm.auto import tqdm

        deadline = time.monotonic() + timeout
        with tqdm(total=100, desc=f"job {job_id}", unit="%", disable=not progress) as bar:
            while True:
                job = self.job(job_id)
                bar.update(round(100 * job.progress.get("fraction", 0.0)) - bar.n)
                bar.set_postfix_str(", ".join(job.progress.get("running", [])) or job.status)
                if job.status == "failed":
                    raise JobFailed(job)
                if job.status == "completed":
                    return job
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f}s")
                time.sleep(poll)

    # ----- models (the control API's registry aliases and split control) ---------------------
    def deployed(self, name: str | None = None,
                 status: Literal["champion", "challenger", "live", "all"] = "all",
                 ) -> list[dict[str, Any]]:  # fmt: skip
        """Registered versions with aliases and live traffic weight."""
        params = {"status": status, **({"name": name} if name else {})}
        return self._call("GET", "/api/ml/models/deployed", params=params)["models"]

    def deploy(self, model_name: str, version: str | int, canary_percent: int) -> dict[str, Any]:
        """``version`` becomes the challenger at ``canary_percent`` percent of traffic."""
        return self._call("POST", "/api/ml/models/deploy", json={
            "model_name": model_name, "version": str(version), "canary_percent": canary_percent})

    def promote(self, model_name: str) -> dict[str, Any]:
        return self._call("POST", f"/api/ml/models/{model_name}/promote")

    def rollback(self, model_name: str, to_version: str | int | None = None) -> dict[str, Any]:
        params = {"to_version": str(to_version)} if to_version is not None else {}
        return self._call("POST", f"/api/ml/models/{model_name}/rollback", params=params)

    def start_ab_test(self, model_name: str, challenger_version: str | int, split: int,
                      duration_minutes: float, metric: str = "mae",
                      name: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Deploy the challenger at ``split`` percent and record the test; ``name`` (unique,
        e.g. "price-test-q4") reads it like its id (a taken name: ``ApiError`` 409)."""
        body = {"model_name": model_name, "challenger_version": str(challenger_version),
                "split": split, "duration_minutes": duration_minutes, "metric": metric,
                **({"name": name} if name is not None else {})}  # fmt: skip
        return self._call("POST", "/api/ml/models/ab-test", json=body)

    def ab_test(self, test: str) -> dict[str, Any]:
        """An A/B test by id or name: per-variant counts, live errors, the leader."""
        return self._call("GET", f"/api/ml/models/ab-test/{test}")

    def predict(self, history: list[tuple[str, float]] | None = None, horizon: int | None = None,
                *, features: dict[str, Any] | list[dict[str, Any]] | None = None,
                model_version: str | int | None = None, user_id: str | None = None,
                model_name: str | None = None,
                ab_test: str | None = None) -> dict[str, Any]:  # fmt: skip
        """A forecast (``history`` + ``horizon``) or a tabular prediction (``features``)
        through the serving router: sticky champion/challenger by ``user_id``, or the live
        ``model_version``; ``model_name`` picks the registered model (default: the stack's
        first), or ``ab_test`` (an A/B test's id or name) the model it tests."""
        body: dict[str, Any] = {"features": features} if features is not None else {
            "data": [list(row) for row in history or []], "forecast_horizon": horizon}
        if model_name is not None:
            body["model_name"] = model_name
        if ab_test is not None:
            body["ab_test"] = ab_test
        if model_version is not None:
            body["model_version"] = str(model_version)
        if user_id:
            body["user_id"] = user_id
        return self._call("POST", "/api/ml/models/predict", json=body)
