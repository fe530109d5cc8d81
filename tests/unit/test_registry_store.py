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
