"""
### tabular_promotion

Decides whether a new tabular challenger (classification, regression, anomaly detection)
replaces its champion. Runs when `tabular_training` registers a version (Asset
`tidemill_registered_tabular_model`) and on demand.

`target`: the registered model and version to judge come from the triggering Asset event's
extra (`name`, `version`, `tracking_uri`), so each registered model in the install is promoted
on its own; a manual run names `model_name` (and `version`, default its challenger).
`evaluate`: puts the challenger into serving at the canary percent, then both versions predict
the test split of the run that trained the challenger and the paired test fit for the task
decides: McNemar's exact test on the labels (or, with `bootstrap`, a paired bootstrap on per-row
log-loss) for classifiers and anomaly detectors, a paired t-test (or bootstrap) on squared
errors for regressors. `apply`: promotes only when the challenger is significantly better;
otherwise keeps it as challenger, or archives it when it is worse. Who, why and the evidence
are recorded as model version tags (the forecasting promotion's).

**Trigger form:** `model_name`, `version` (manual runs), `alpha`, `min_samples`, `bootstrap`,
`canary_percent`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from tidemill.dag_support import TABULAR_MODEL_ASSET, retry_args
from tidemill.dag_support import home as _home


@dag(
    dag_id="tabular_promotion",
    schedule=[TABULAR_MODEL_ASSET],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "promotion", "tabular"],
    default_args=retry_args(1, 30),
    max_active_runs=1,
    params={
        "model_name": Param(None, type=["null", "string"], title="Registered model (manual)"),
        "version": Param(None, type=["null", "string"], title="Version (default: challenger)"),
        "alpha": Param(0.05, type="number", exclusiveMinimum=0, maximum=0.5, title="Alpha"),
        "min_samples": Param(30, type="integer", minimum=2, title="Minimum labelled test rows"),
        "bootstrap": Param(False, type="boolean", title="Paired bootstrap (log-loss / squared)"),
        "canary_percent": Param(
            10, type="integer", minimum=0, maximum=100, title="Challenger traffic (%)"
        ),
    },
)
def tabular_promotion() -> None:
    @task
    def target(params: dict[str, Any], triggering_asset_events: Any = None) -> dict[str, str]:
        from monitoring.tabular_promotion import registration

        events = (triggering_asset_events or {}).get(TABULAR_MODEL_ASSET, [])
        return registration([dict(e.extra or {}) for e in events], _home(),
                            params["model_name"], params["version"])  # fmt: skip

    @task
    def evaluate(registered: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        from monitoring.tabular_promotion import evaluate_registration

        return evaluate_registration(registered, _home(), params["alpha"], params["min_samples"],
                                     params["bootstrap"], params["canary_percent"])  # fmt: skip

    @task
    def apply(evaluation: dict[str, Any], run_id: str) -> dict[str, Any]:
        from monitoring.tabular_promotion import apply_decision

        return apply_decision(evaluation, _home(), actor=f"airflow:tabular_promotion:{run_id}")

    apply(evaluate(target()))


tabular_promotion()
