"""
### tabular_drift_monitor

Watches a tabular champion (classification, regression, anomaly detection) in production and
starts its retraining when what it is asked about moved.

`check`: Evidently reports comparing the champion's training snapshot (MLflow lineage) and
its own answers on it with the feature records it answered since `since_hours` (the
prediction log): drift of every feature (numbers and categories, Jensen-Shannon distance)
and of its answers (`prediction_proba`, `prediction` or `score`). Reports go to the artifact
store, MLflow (`tidemill-monitoring`) and the Evidently workspace; gauges to Prometheus.
Records whose labels came back through the control API's `POST /feedback` (request id and
record position) add an Evidently classification or regression quality report per variant
with at least `min_labels` of them (fewer: the check says so and reports none), logged with
the drift reports; the numbers become `tidemill_live_quality` gauges.
`drifted` → `retrain_conf` → `trigger_retraining`: on drift, `tabular_training` runs the same
config with the reason in its conf. Fewer than `min_records` records: nothing is judged.

**Trigger form:** `config`, `since_hours`, `min_records`, `min_labels`, `drift` (threshold
overrides, e.g. `{"drift_share": 0.3}`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from tidemill.dag_support import TABULAR_CONFIG, retry_args
from tidemill.dag_support import home as _home


@dag(
    dag_id="tabular_drift_monitor",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "monitoring", "tabular"],
    default_args=retry_args(1, 30),
    max_active_runs=1,
    params={
        "config": Param(TABULAR_CONFIG, type="string", title="Experiment config (path or URL)"),
        "since_hours": Param(168, type="number", minimum=1, title="Prediction log window (h)"),
        "min_records": Param(30, type="integer", minimum=2, title="Records needed"),
        "min_labels": Param(30, type="integer", minimum=2, title="Labels for a quality report"),
        "drift": Param({}, type="object", title="Drift threshold overrides"),
    },
)
def tabular_drift_monitor() -> None:
    @task
    def check(params: dict[str, Any]) -> dict[str, Any]:
        from monitoring.tabular_drift import tabular_drift_monitor as run

        return run(params["config"], _home(), params["since_hours"], params["min_records"],
                   params["drift"], params["min_labels"])  # fmt: skip

    @task.short_circuit
    def drifted(summary: dict[str, Any]) -> bool:
        return bool(summary["detected"])

    @task
    def retrain_conf(summary: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {"config": params["config"], "reason": f"drift: {summary['reason']}"}

    summary = check()
    conf = retrain_conf(summary)
    drifted(summary) >> conf
    TriggerDagRunOperator(task_id="trigger_retraining", trigger_dag_id="tabular_training",
                          conf=conf)  # fmt: skip


tabular_drift_monitor()
