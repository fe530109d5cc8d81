"""Promotion and drift monitoring of a panel model (several M4 series) on a real MLflow store.

v1: the naive forecast (seasonal naive with season 1) across six series, champion; v2: ETS per
series, challenger. The promotion job compares them over every series (mean MASE per origin)
and moves the aliases; the drift job reads every series' recent window.
"""

from __future__ import annotations

import pytest
import yaml
from mlflow import MlflowClient

from monitoring.drift_job import current_window, drift_monitor
from monitoring.promotion_job import apply_decision, evaluate_challenger
from pipelines.home import TidemillHome
from pipelines.promotion import PromotionPolicy
from pipelines.workflow import run_pipeline

from .conftest import REPO, m4_slice

NAME = "panel-promotion"
IDS = ["H1", "H10", "H20", "H30", "H40", "H50"]
ROWS = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("panel-promotion")
    m4_slice(IDS, ROWS, tmp / "panel.parquet")
    cfg = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    cfg.update(
        name="panel-promotion",
        horizon=24,
        split={"val_size": 24, "test_size": 24},
        algorithms={
            "seasonal_naive": {"params": {"season": 1}},
            "ets": {"params": {"seasonal": "add", "trend": "none", "lookback": 96}},
        },
        mlflow={"experiment": "panel-promotion", "registered_model_name": NAME},
    )
    cfg["data"]["source"]["path"] = str(tmp / "panel.parquet")
    path = tmp / "panel.yaml"
    path.write_text(yaml.safe_dump(cfg))
    home = TidemillHome.resolve(tmp / "home")
    run_pipeline(path, home, run_key="v1", algorithms=["seasonal_naive"])
    run_pipeline(path, home, run_key="v2", algorithms=["ets"])
    return home, path


def _aliases(home):
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    return {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()}


def test_promotion_compares_every_series_and_moves_the_alias(trained):
    home, config = trained
    assert _aliases(home) == {"champion": "1", "challenger": "2"}
    evaluation = evaluate_challenger(config, home, PromotionPolicy(backtest_rows=150))
    assert evaluation["promote"], evaluation["reason"]
    assert evaluation["backtest"]["n"] == 150 - 24 + 1  # origins common to all six series
    mase = evaluation["backtest_mae"]  # mean MASE over series for a panel
    assert mase["challenger"] < mase["champion"] < 10
    result = apply_decision(config, home, evaluation, actor="test")
    assert result["action"] == "promoted"
    assert _aliases(home) == {"champion": "2", "previous_champion": "1"}


def test_drift_job_reads_every_series_window(trained):
    home, config = trained
    window = current_window(config, 100)
    assert window.groupby("unique_id").size().to_dict() == dict.fromkeys(IDS, 100)
    summary = drift_monitor(config, home, window_rows=100)
    assert summary["detected"] is False, summary
