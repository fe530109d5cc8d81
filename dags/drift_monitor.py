"""
### drift_monitor

Watches the champion in production and starts retraining when the data moved.

`check`: Evidently reports (data drift on target and features, prediction drift, regression
quality and interval coverage where actuals came back) comparing the champion's training
snapshot (found through its MLflow lineage) with the most recent rows of the source and the
prediction log; HTML + JSON reports go to `<store>/reports` in the artifact store (the home by
default), MLflow (experiment `tidemill-monitoring`) and the Evidently workspace
`<store>/reports/evidently-workspace`; drift gauges to `<store>/metrics` (the control API
re-exports them). The task keeps nothing locally.
`drifted` → `retrain_conf` → `trigger_retraining`: on drift, `forecast_training` is triggered
with the reason in its conf; without drift nothing happens.
`watch_champion`: a champion promoted within the watch window whose live error degrades
beyond the margin is rolled back automatically.

**Trigger form:** `config`, `window_rows` (current window size), `since_hours` (prediction
log window), `current_path` (a CSV/Parquet batch to check instead of the configured source),
`drift` (threshold overrides, e.g. `{"drift_share": 0.5}`), `watch_hours`, `rollback_margin`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from tidemill.dag_support import DEFAULT_CONFIG, retry_args
from tidemill.dag_support import home as _home


@dag(
    dag_id="drift_monitor",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "monitoring"],
    default_args=retry_args(1, 30),
    max_active_runs=1,
    params={
        "config": Param(DEFAULT_CONFIG, type="string", title="Experiment config (path or URL)"),
        "window_rows": Param(168, type="integer", minimum=24, title="Current window (rows)"),
        "since_hours": Param(168, type="number", minimum=1, title="Prediction log window (h)"),
        "current_path": Param(None, type=["null", "string"], title="Batch to check instead"),
        "drift": Param({}, type="object", title="Drift threshold overrides"),
        "watch_hours": Param(48, type="number", minimum=1, title="Rollback watch window (h)"),
        "rollback_margin": Param(0.25, type="number", minimum=0, title="Rollback margin"),
    },
)
def drift_monitor() -> None:
    @task
    def check(params: dict[str, Any]) -> dict[str, Any]:
        from monitoring.drift_job import drift_monitor as run

        return run(
            params["config"],
            _home(),
            params["window_rows"],
            params["since_hours"],
            params["current_path"],
            params["drift"],
        )

    @task.short_circuit
    def drifted(summary: dict[str, Any]) -> bool:
        return bool(summary["detected"])

    @task
    def retrain_conf(summary: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {"config": params["config"], "reason": f"drift: {summary['reason']}"}

    @task
    def watch_champion(params: dict[str, Any]) -> dict[str, Any]:
        from monitoring.promotion_job import rollback_watch

        return rollback_watch(
            params["config"], _home(), params["watch_hours"], params["rollback_margin"]
        )

    summary = check()
    conf = retrain_conf(summary)
    drifted(summary) >> conf
    TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id="forecast_training",
        conf=conf,
    )
    watch_champion()


drift_monitor()
