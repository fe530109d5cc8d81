"""
### promote_challenger

Decides whether the new challenger replaces the champion. Runs when `forecast_training`
registers a model (Asset `tidemill_registered_model`) and on demand. The registration that
triggered the run names the model to judge: its event carries the effective config of the
training run (a manual run uses the form's `config`).

`evaluate`: puts the challenger into serving at the canary percent, then compares challenger
and champion on the same recent backtest window and on live A/B errors from the prediction log
joined with actuals, with the Diebold–Mariano test (Harvey–Leybourne–Newbold correction).
`apply`: promotes only when the challenger is significantly better (aliases and stages move,
serving follows through the same code path as the control API); otherwise keeps it as
challenger (better but not significantly) or archives it (worse). Who, why and the evidence
are recorded as model version tags.

**Trigger form:** `config`, `alpha`, `min_samples`, `backtest_rows`, `canary_percent`,
`since_hours` (live A/B window), `current_path` (data for the backtest instead of the source).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from tidemill.dag_support import DEFAULT_CONFIG, MODEL_ASSET, retry_args
from tidemill.dag_support import home as _home


@dag(
    dag_id="promote_challenger",
    schedule=[MODEL_ASSET],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["tidemill", "promotion"],
    default_args=retry_args(1, 30),
    max_active_runs=1,
    params={
        "config": Param(DEFAULT_CONFIG, type="string", title="Experiment config (path or URL)"),
        "alpha": Param(0.05, type="number", exclusiveMinimum=0, maximum=0.5, title="Alpha"),
        "min_samples": Param(30, type="integer", minimum=2, title="Minimum paired errors"),
        "backtest_rows": Param(720, type="integer", minimum=24, title="Backtest window rows"),
        "canary_percent": Param(
            10, type="integer", minimum=0, maximum=100, title="Challenger traffic (%)"
        ),
        "since_hours": Param(168, type="number", minimum=1, title="Live A/B window (h)"),
        "current_path": Param(None, type=["null", "string"], title="Backtest data instead"),
    },
)
def promote_challenger() -> None:
    @task
    def target(params: dict[str, Any], triggering_asset_events: Any = None) -> str:
        from monitoring.promotion_job import promotion_config

        events = (triggering_asset_events or {}).get(MODEL_ASSET, [])
        return promotion_config([dict(e.extra or {}) for e in events], params["config"])

    @task
    def evaluate(config: str, params: dict[str, Any]) -> dict[str, Any]:
        from monitoring.promotion_job import evaluate_challenger
        from pipelines.promotion import PromotionPolicy

        policy = PromotionPolicy(
            alpha=params["alpha"],
            min_samples=params["min_samples"],
            backtest_rows=params["backtest_rows"],
        )
        return evaluate_challenger(
            config,
            _home(),
            policy,
            params["canary_percent"],
            params["since_hours"],
            params["current_path"],
        )

    @task
    def apply(config: str, evaluation: dict[str, Any], run_id: str) -> dict[str, Any]:
        from monitoring.promotion_job import apply_decision

        return apply_decision(
            config, _home(), evaluation, actor=f"airflow:promote_challenger:{run_id}"
        )

    config = target()
    apply(config, evaluate(config))


promote_challenger()
