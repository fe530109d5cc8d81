"""A model trained on a panel (six M4 hourly series) served by the real local stack: one
registered version forecasts a batch of different series in one request, each at its own
scale, and a window of an unknown series, or without a series id, gets a 4xx naming it. The
version is the ensemble candidate (mean of NLinear and seasonal naive), best on validation
here, so the ensemble is what serving loads."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import ENDPOINT, REPO, TIDEMILL, Stack, start_stack

M4 = REPO / "data" / "m4" / "hourly_long.parquet"
SERIES = ["H1", "H2", "H7", "H12", "H20", "H30"]


@pytest.fixture(scope="module")
def panel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("panel-home")
    data = pd.read_parquet(M4)
    data = data[data["unique_id"].isin(SERIES)].groupby("unique_id", sort=False).tail(200)
    data.to_parquet(root / "panel.parquet", index=False)
    config = {
        "name": "serving-panel",
        "data": {"source": {"kind": "parquet", "path": str(root / "panel.parquet")},
                 "id_column": "unique_id", "time_column": "ds", "target_column": "y",
                 "freq": "h"},
        "split": {"val_size": 24, "test_size": 24},
        "horizon": 12,
        "algorithms": {"nlinear": {"params": {"lookback": 48, "alpha": 1.0}},
                       "seasonal_naive": {"params": {"season": 24}}},
        "ensemble": {"enabled": True, "top_k": 2},
        "tuning": {"n_trials": 1, "metric": "mase"},
        "mlflow": {"experiment": "serving-panel", "registered_model_name": "serving-panel"},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    trained = subprocess.run([str(TIDEMILL), "train", "--config", str(root / "config.yaml"),
                              "--home", str(root / "home")], cwd=root, env=env, check=True,
                             capture_output=True, text=True, timeout=300)
    assert "register: serving-panel version 1 (ensemble)" in trained.stdout, trained.stdout
    stack = start_stack(root / "home", 0, root / "stack.log")
    try:
        yield stack, data
    finally:
        stack.stop()


def _instance(data: pd.DataFrame, uid: str, series_id: str | None = None) -> dict:
    rows = data[data["unique_id"] == uid].tail(60)
    instance = {"timestamps": rows["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(),
                "values": rows["y"].tolist()}
    if series_id is not None:
        instance["series_id"] = series_id
    return instance


def test_a_batch_of_different_series_in_one_request(panel_stack) -> None:
    stack, data = panel_stack
    body = {"instances": [_instance(data, uid, uid) for uid in SERIES]}
    answer = httpx.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["series_id"] for p in predictions] == SERIES
    for uid, prediction in zip(SERIES, predictions, strict=True):
        level = data.loc[data["unique_id"] == uid, "y"].tail(60).mean()
        assert abs(np.mean(prediction["mean"]) - level) < 0.5 * level, uid
    # the same window under another trained series' id is scaled with that series' statistics
    swapped = {"instances": [_instance(data, "H1", "H7")]}
    other = httpx.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=swapped, timeout=60)
    assert other.status_code == 200
    assert other.json()["predictions"][0]["mean"] != predictions[0]["mean"]


def test_unknown_or_missing_series_is_a_4xx_naming_it(panel_stack) -> None:
    stack, data = panel_stack
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"
    body = {"instances": [_instance(data, "H1", "H1"), _instance(data, "H2", "H999")]}
    unknown = httpx.post(url, json=body, timeout=60)
    assert unknown.status_code == 404, unknown.text
    assert "unknown series 'H999'" in unknown.json()["error"]
    assert "6 series it was trained on" in unknown.json()["error"]
    missing = httpx.post(url, json={"instances": [_instance(data, "H1", "H1"),
                                                  _instance(data, "H2")]}, timeout=60)
    assert missing.status_code == 400, missing.text
    assert missing.json()["field"] == "instances[1].series_id"
    assert "forecasts 6 series" in missing.json()["error"]


def test_the_example_request_names_its_series(panel_stack) -> None:
    stack, _ = panel_stack
    example = httpx.get(f"{stack.router}/v1/models/{ENDPOINT}/example", timeout=30).json()
    assert example["instances"][0]["series_id"] in SERIES
    answer = httpx.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=example, timeout=60)
    assert answer.status_code == 200, answer.text
