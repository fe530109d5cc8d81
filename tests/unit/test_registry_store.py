"""Which MLflow store a home's pipeline uses, when several homes share a process."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from pipelines import registry
from pipelines.config import load_config
from pipelines.home import TidemillHome

REPO = Path(__file__).resolve().parents[2]


def test_second_home_in_one_process_uses_its_own_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(REPO / "configs" / "etth1.yaml")
    first, second = TidemillHome(tmp_path / "a"), TidemillHome(tmp_path / "b")
    registry.configure(cfg, first)
    assert mlflow.get_tracking_uri() == first.mlflow_uri
    assert registry.tracking_uri(cfg, second) == second.mlflow_uri
    registry.configure(cfg, second)
    assert mlflow.get_tracking_uri() == second.mlflow_uri


def test_deployment_environment_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = f"sqlite:///{tmp_path / 'server.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    cfg = load_config(REPO / "configs" / "etth1.yaml")
    registry.configure(cfg, TidemillHome(tmp_path / "a"))
    assert registry.tracking_uri(cfg, TidemillHome(tmp_path / "b")) == server



def test_curves_are_logged_by_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    registry.use_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("curves")
    with mlflow.start_run() as run:
        registry.log_curves({"val_mae_by_step": [1.0, 2.0, float("nan"), 4.0],
                             "test_mae_by_step": [0.5] * 24, "empty": []})
    client = mlflow.MlflowClient()
    history = {key: sorted((m.step, m.value) for m in client.get_metric_history(
        run.info.run_id, key)) for key in ("val_mae_by_step", "test_mae_by_step", "empty")}
    assert history == {"val_mae_by_step": [(1, 1.0), (2, 2.0), (4, 4.0)],  # NaN left out
                       "test_mae_by_step": [(s, 0.5) for s in range(1, 25)], "empty": []}
