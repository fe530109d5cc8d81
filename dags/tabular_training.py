"""
### tabular_training

Trains Tidemill classification, regression or anomaly models (the config's `task`) and
registers the best one in MLflow.

`ingest` (read CSV/Excel/Parquet/SQL, validate naming column and rows, drop leakage and
constant columns, write a hashed Parquet snapshot) → `prepare` (stratified or chronological
train/validation/test split) → `tune` (one Optuna study per algorithm, cross-validated on
the training rows, mapped) → `train` (fit the scikit-learn pipeline, evaluate on validation
and test, plots, feature importance and model card in an MLflow run per candidate, mapped) →
`select` (best validation metric) → `register` (new version with the model card as its
description: alias `challenger`, and `champion` when there is none; emits the tabular model
Asset).

Every task is a thin call into `pipelines.tabular.workflow`; the same pipeline runs without
Airflow as `tidemill train --config X`. Tasks pass paths and small dicts through XCom.

**Trigger form:** `config` (experiment YAML with `task: classification | regression |
anomaly`), `algorithms` (subset of the configured ones; empty = all), `n_trials` (empty = as
configured), `reason`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from tidemill.dag_support import TABULAR_CONFIG, TABULAR_MODEL_ASSET, retry_args
from tidemill.dag_support import home as _home


def _run_dir(run_id: str) -> str:
    """The run's URL in the artifact store (``pipelines.settings``), named after the run id."""
    from pipelines.settings import Settings

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Settings.resolve(_home()).store.url("runs", f"tabular-{safe}")


@dag(
    dag_id="tabular_training",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "training", "tabular"],
    default_args=retry_args(2, 20),
    max_active_runs=1,
    params={
        "config": Param(TABULAR_CONFIG, type="string", title="Experiment config (path or URL)"),
        "algorithms": Param(
            [],
            type="array",
            title="Algorithms",
            description="Subset of the configured algorithms; empty trains all of them.",
        ),
        "n_trials": Param(None, type=["null", "integer"], minimum=1, title="Optuna trials"),
        "reason": Param("manual", type="string", title="Why this run was started"),
    },
)
def tabular_training() -> None:
    @task
    def ingest(params: dict[str, Any], run_id: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.config import ConfigError
        from pipelines.data.validate import DataValidationError
        from pipelines.tabular.workflow import ingest as run

        print(f"[tidemill] run reason: {params.get('reason', 'manual')}")
        try:
            return run(
                params["config"], _run_dir(run_id), params["algorithms"] or None,
                params["n_trials"],
            )  # fmt: skip
        except (ConfigError, DataValidationError) as exc:  # bad input: no retry
            raise AirflowFailException(str(exc)) from exc

    @task
    def prepare(ingested: dict[str, Any], run_id: str) -> dict[str, Any]:
        from pipelines.tabular.workflow import prepare as run

        return run(ingested, _run_dir(run_id))

    @task
    def algorithms(prepared: dict[str, Any]) -> list[str]:
        return prepared["algorithms"]

    @task(map_index_template="{{ task.op_kwargs['algorithm'] }}")
    def tune(prepared: dict[str, Any], algorithm: str) -> dict[str, Any]:
        from pipelines.tabular.workflow import tune as run

        return run(prepared, algorithm, _home())

    @task(map_index_template="{{ task.op_kwargs['tuned']['algorithm'] }}")
    def train(prepared: dict[str, Any], tuned: dict[str, Any], run_id: str) -> dict[str, Any]:
        from pipelines.tabular.workflow import train as run

        return run(prepared, tuned, _run_dir(run_id), _home(), run_id)

    @task
    def select(candidates: list[dict[str, Any]]) -> dict[str, Any]:
        from pipelines.tabular.workflow import select as run

        return run(list(candidates))

    @task(outlets=[TABULAR_MODEL_ASSET])
    def register(
        prepared: dict[str, Any], best: dict[str, Any], run_id: str, outlet_events: Any = None
    ) -> dict[str, Any]:
        from pipelines.tabular.workflow import register as run

        registered = run(prepared, best, _home(), run_id)
        outlet_events[TABULAR_MODEL_ASSET].extra = {
            key: registered[key] for key in ("name", "version", "aliases", "task", "tracking_uri")
        }
        return registered

    prepared = prepare(ingest())
    tuned = tune.partial(prepared=prepared).expand(algorithm=algorithms(prepared))
    candidates = train.partial(prepared=prepared).expand(tuned=tuned)
    register(prepared, select(candidates))


tabular_training()
