"""The ensemble candidate on eight M4 hourly series through the pipeline and a real MLflow
store: built from the best candidates on validation, evaluated and logged like them, selected
when it is best, registered and served as one model."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from pipelines.home import TidemillHome
from pipelines.models.ensemble import Ensemble
from pipelines.registry import load_registered_bundle
from pipelines.workflow import run_pipeline

from .conftest import REPO, m4_slice

NAME = "ensemble-forecaster"
IDS = ["H1", "H10", "H20", "H30", "H40", "H50", "H60", "H70"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ensemble")
    data = m4_slice(IDS, 300, tmp / "panel.parquet")
    cfg = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    cfg.update(
        name="ensemble",
        horizon=24,
        split={"val_size": 24, "test_size": 24},
        algorithms={
            "seasonal_naive": {"params": {"season": 24}},
            "ets": {"params": {"seasonal": "add", "trend": "add", "damped": True,
                               "lookback": 96}},
            "theta": {"params": {"lookback": 96}},
            "nlinear": {"params": {"lookback": 48, "alpha": 10.0}},
        },
        ensemble={"enabled": True, "top_k": 3, "combine": "median"},
        mlflow={"experiment": "ensemble", "registered_model_name": NAME},
    )
    cfg["data"]["source"]["path"] = str(tmp / "panel.parquet")
    path = tmp / "ensemble.yaml"
    path.write_text(yaml.safe_dump(cfg))
    home = TidemillHome.resolve(tmp / "home")
    return home, run_pipeline(path, home, run_key="ens"), data


def test_ensemble_of_the_best_candidates_competes_and_is_logged(trained):
    home, result, _ = trained
    by_algo = {c["algorithm"]: c for c in result["candidates"]}
    assert set(by_algo) == {"seasonal_naive", "ets", "theta", "nlinear", "ensemble"}
    singles = sorted((c for a, c in by_algo.items() if a != "ensemble"),
                     key=lambda c: c["val_metric"])
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    run = client.get_run(by_algo["ensemble"]["run_id"])
    assert run.data.params["hp.members"] == str([c["algorithm"] for c in singles[:3]])
    assert run.data.params["hp.combine"] == "median"
    test = by_algo["ensemble"]["test"]
    assert test["mase"] > 0 and 0.5 <= test["coverage"] <= 1 and test["owa"] > 0
    best = min(result["candidates"], key=lambda c: c["val_metric"])
    assert result["registered"]["algorithm"] == best["algorithm"]
    # on these series the median of the three best beats each of them on validation
    assert best["algorithm"] == "ensemble", {a: c["val_metric"] for a, c in by_algo.items()}


def test_registered_ensemble_serves_a_batch_of_series_with_intervals(trained):
    home, _, data = trained
    bundle = load_registered_bundle(home.mlflow_uri, NAME, "1")
    assert isinstance(bundle.forecaster, Ensemble)
    assert [m.name for m in bundle.forecaster.members] == bundle.forecaster.params["members"]
    picked = data[data["unique_id"].isin(["H1", "H40", "H70"])]
    hist = picked.groupby("unique_id", sort=False).tail(bundle.min_history)
    windows = np.stack([g["y"].to_numpy(float) for _, g in hist.groupby("unique_id", sort=False)])
    last_ds = hist.groupby("unique_id", sort=False)["ds"].last().to_numpy("datetime64[ns]")
    out = bundle.forecast(windows, last_ds, ids=["H1", "H40", "H70"])
    assert out.yhat.shape == (3, 24)
    assert (out.lower < out.yhat).all() and (out.yhat < out.upper).all()
    levels = out.yhat.mean(axis=1)
    for level, window in zip(levels, windows, strict=True):  # each series at its own scale
        assert abs(level - window.mean()) < 0.5 * window.mean()
