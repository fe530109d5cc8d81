"""Candidate selection on several validation windows with M4's OWA, on six M4 hourly series
through the pipeline and a real MLflow store: every window of the validation rows is scored
(recomputed here for seasonal naive), the lowest score is registered, and it repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from pipelines import evaluation, naive2
from pipelines.home import TidemillHome
from pipelines.workflow import run_pipeline

from .conftest import REPO, m4_slice

IDS = ["H1", "H12", "H23", "H34", "H45", "H56"]
HORIZON, VAL, TEST, SEASON = 24, 72, 24, 24


def _config(tmp, data: pd.DataFrame) -> dict:
    data.to_parquet(tmp / "panel.parquet", index=False)
    cfg = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    cfg.update(
        name="selection",
        horizon=HORIZON,
        split={"val_size": VAL, "test_size": TEST},
        algorithms={
            "seasonal_naive": {"params": {"season": SEASON}},
            "nlinear": {"params": {"lookback": 48, "alpha": 10.0}},
        },
        ensemble={"enabled": True, "top_k": 2, "combine": "mean"},
        selection={"metric": "owa"},
        mlflow={"experiment": "selection", "registered_model_name": "selection"},
    )
    cfg["data"]["source"]["path"] = str(tmp / "panel.parquet")
    return cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = m4_slice(IDS, 300)
    out = []
    for k in range(2):
        tmp = tmp_path_factory.mktemp(f"selection{k}")
        (tmp / "sel.yaml").write_text(yaml.safe_dump(_config(tmp, data)))
        home = TidemillHome.resolve(tmp / "home")
        out.append((home, run_pipeline(tmp / "sel.yaml", home, run_key="sel")))
    return data, out


def test_selection_scores_every_validation_window(runs):
    data, [(home, result), _] = runs
    by_algo = {c["algorithm"]: c for c in result["candidates"]}
    assert set(by_algo) == {"seasonal_naive", "nlinear", "ensemble"}
    # seasonal naive's OWA over all VAL - HORIZON + 1 windows of every series, recomputed
    windows = VAL - HORIZON + 1
    actual, point, ref, dens = [], [], [], []
    for _, g in data.groupby("unique_id", sort=False):
        y = g["y"].to_numpy(float)
        val_start = len(y) - TEST - VAL
        origins = np.arange(val_start, val_start + windows)
        actual.append(evaluation.actual_windows(y, origins, HORIZON))
        point.append(np.stack([y[o - SEASON + np.arange(HORIZON) % SEASON] for o in origins]))
        ref.append(naive2.forecast(y, origins, HORIZON, SEASON))
        dens.append(np.full((windows, 1), evaluation.mase_scale(y[:val_start], SEASON)))
    actual, point, ref, dens = map(np.concatenate, (actual, point, ref, dens))
    ours = evaluation.evaluate(actual, point, None, None, dens).overall
    theirs = evaluation.evaluate(actual, ref, None, None, dens).overall
    owa = naive2.owa(ours["smape"], ours["mase"], theirs["smape"], theirs["mase"])
    assert by_algo["seasonal_naive"]["metric"] == "owa"
    assert by_algo["seasonal_naive"]["val_metric"] == pytest.approx(owa, rel=1e-9)
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    for cand in result["candidates"]:
        run = client.get_run(cand["run_id"])
        assert run.data.metrics["selection_windows"] == len(IDS) * windows
        assert run.data.metrics["selection_score"] == pytest.approx(cand["val_metric"])
        assert run.data.metrics["selection_score"] == pytest.approx(run.data.metrics["val_owa"])
        assert run.data.tags["tidemill.selection_metric"] == "owa"
    best = min(result["candidates"], key=lambda c: c["val_metric"])
    assert result["registered"]["algorithm"] == best["algorithm"]
    version = client.get_model_version("selection", result["registered"]["version"])
    assert float(version.tags["tidemill.val_owa"]) == pytest.approx(best["val_metric"], rel=1e-5)


def test_selection_repeats_exactly(runs):
    _, [(_, first), (_, second)] = runs
    scores = [{c["algorithm"]: c["val_metric"] for c in r["candidates"]} for r in (first, second)]
    assert scores[0] == scores[1]
    assert first["registered"]["algorithm"] == second["registered"]["algorithm"]


def test_summary_table_ranks_candidates_by_the_selection_score(runs):
    from tidemill.cli import metrics_table

    _, [(home, result), _] = runs
    table, info = metrics_table(home.mlflow_uri, "selection")
    lines = table.splitlines()
    assert "select" in lines[0] and "(select: validation owa)" in lines[0]
    ranked = sorted(result["candidates"], key=lambda c: c["val_metric"])
    assert [line.split()[0] for line in lines[2:]] == [c["algorithm"] for c in ranked]
    assert info["algorithm"] == ranked[0]["algorithm"]
    assert float(lines[2].split()[2]) == pytest.approx(ranked[0]["val_metric"], abs=5e-4)
