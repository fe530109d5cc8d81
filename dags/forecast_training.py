"""
### forecast_training

Trains Tidemill forecasters and registers the best one in MLflow.

`ingest` (validate the source, write a hashed Parquet snapshot) → `preprocess` (split, fit the
scaler on training rows) → `tune` (one Optuna study per algorithm, mapped) → `train` (fit,
calibrate intervals, evaluate on validation and test, log an MLflow run per candidate) →
`ensemble` (when the config's `ensemble.enabled`: the mean or median of the best candidates,
one more candidate) → `select` (best validation error) → `register` (new version: alias
`challenger`, and `champion` when there is none; emits the model Asset).

Every task is a thin call into `pipelines.workflow`; the same pipeline runs without Airflow as
`tidemill train --config X`. Tasks pass artifact-store URLs and small dicts through XCom, never
dataframes or local paths, so each task may run in its own pod (KubernetesExecutor).

**Trigger form:** `config` (experiment YAML), `algorithms` (subset of the configured ones;
empty = all), `n_trials` and `horizon` (empty = as configured).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from tidemill.dag_support import DEFAULT_CONFIG, MODEL_ASSET, retry_args
from tidemill.dag_support import home as _home


def _run_dir(run_id: str) -> str:
    """The run's URL in the artifact store (``pipelines.settings``), named after the run id."""
    from pipelines.settings import Settings

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Settings.resolve(_home()).store.url("runs", safe)


@dag(
    dag_id="forecast_training",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "training"],
    default_args=retry_args(2, 20),
    max_active_runs=1,
    params={
        "config": Param(DEFAULT_CONFIG, type="string", title="Experiment config (path or URL)"),
        "algorithms": Param(
            [],
            type="array",
            title="Algorithms",
            description="Subset of the configured algorithms; empty trains all of them.",
        ),
        "n_trials": Param(None, type=["null", "integer"], minimum=1, title="Optuna trials"),
        "horizon": Param(None, type=["null", "integer"], minimum=1, title="Forecast horizon"),
        "reason": Param("manual", type="string", title="Why this run was started"),
    },
)
def forecast_training() -> None:
    @task
    def ingest(params: dict[str, Any], run_id: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.config import ConfigError
        from pipelines.data.validate import DataValidationError
        from pipelines.workflow import ingest as run

        print(f"[tidemill] run reason: {params.get('reason', 'manual')}")
        try:
            return run(
                params["config"],
                _run_dir(run_id),
                params["algorithms"] or None,
                params["n_trials"],
                params["horizon"],
            )
        except (ConfigError, DataValidationError) as exc:  # bad input: no retry
            raise AirflowFailException(str(exc)) from exc

    @task
    def preprocess(ingested: dict[str, Any], run_id: str) -> dict[str, Any]:
        from pipelines.workflow import preprocess as run

        return run(ingested, _run_dir(run_id))

    @task
    def algorithms(prepared: dict[str, Any]) -> list[str]:
        return prepared["algorithms"]

    @task(map_index_template="{{ task.op_kwargs['algorithm'] }}")
    def tune(prepared: dict[str, Any], algorithm: str) -> dict[str, Any]:
        from pipelines.workflow import tune as run

        return run(prepared, algorithm, _home())

    @task(map_index_template="{{ task.op_kwargs['tuned']['algorithm'] }}")
    def train(prepared: dict[str, Any], tuned: dict[str, Any], run_id: str) -> dict[str, Any]:
        from pipelines.workflow import train as run

        return run(prepared, tuned, _run_dir(run_id), _home(), run_id)

    @task
    def ensemble(
        prepared: dict[str, Any], candidates: list[dict[str, Any]], run_id: str
    ) -> list[dict[str, Any]]:
        from pipelines.workflow import ensemble as run

        return run(prepared, list(candidates), _run_dir(run_id), _home(), run_id)

    @task
    def select(candidates: list[dict[str, Any]]) -> dict[str, Any]:
        from pipelines.workflow import select as run

        return run(list(candidates))

    @task(outlets=[MODEL_ASSET])
    def register(
        prepared: dict[str, Any], best: dict[str, Any], run_id: str, outlet_events: Any = None
    ) -> dict[str, Any]:
        from pipelines.workflow import register as run

        registered = run(prepared, best, _home(), run_id)
        outlet_events[MODEL_ASSET].extra = {
            "name": registered["name"],
            "version": registered["version"],
            "aliases": registered["aliases"],
            "tracking_uri": registered["tracking_uri"],
            "config": prepared["config"],
        }
        return registered

    prepared = preprocess(ingest())
    tuned = tune.partial(prepared=prepared).expand(algorithm=algorithms(prepared))
    candidates = train.partial(prepared=prepared).expand(tuned=tuned)
    register(prepared, select(ensemble(prepared, candidates)))


forecast_training()
