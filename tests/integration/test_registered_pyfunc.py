"""The logged pyfunc's signature takes an optional ``unique_id``: several series per request,
in process (``mlflow.pyfunc.load_model``) and through a real ``mlflow models serve``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import registry
from pipelines.bundle import ForecastBundle
from pipelines.config import PreprocessConfig
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor

from .conftest import REPO

HORIZON = 6
LOOKBACK = 48


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    raw = pd.read_csv(REPO / "data" / "ETTh1.csv", nrows=1500)
    return pd.DataFrame({"ds": pd.to_datetime(raw["date"]), "y": raw["OT"].astype(float)})


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, series: pd.DataFrame
) -> Iterator[tuple[str, str]]:
    """(tracking URI, model URI) of an NLinear bundle logged the way training logs it."""
    root = tmp_path_factory.mktemp("pyfunc")
    pre = Preprocessor(PreprocessConfig()).fit(series.iloc[:1000].assign(unique_id="ETTh1"))
    y = pre.transform_target(series["y"].to_numpy(float))
    model = build_model("nlinear", HORIZON, lookback=LOOKBACK).fit(y[:1000])
    model.calibrate(y, np.arange(1000, 1200))
    bundle_dir = ForecastBundle(pre, model, {"series_id": "ETTh1"}).save(root / "bundle")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    example = series.iloc[1000 - LOOKBACK : 1000].assign(unique_id="ETTh1")
    with pytest.MonkeyPatch.context() as mp:
        # set_tracking_uri also exports $MLFLOW_TRACKING_URI: restored after this module
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        artifacts = (root / "artifacts").as_uri()  # not ./mlruns
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("pyfunc", artifacts))
        with mlflow.start_run():
            model_uri = registry.log_bundle_model(
                bundle_dir, "nlinear", example[["unique_id", "ds", "y"]], HORIZON
            )
        yield uri, model_uri


def two_series(series: pd.DataFrame) -> pd.DataFrame:
    """Two windows of ETTh1 as series ``a`` and ``b``."""
    a, b = series.iloc[1200:1300], series.iloc[1350:1420]
    both = pd.concat([a.assign(unique_id="a"), b.assign(unique_id="b")], ignore_index=True)
    return both[["unique_id", "ds", "y"]]


def test_signature_and_example_carry_optional_unique_id(logged):
    _, model_uri = logged
    info = mlflow.models.get_model_info(model_uri)
    inputs = {c.name: (c.type.name, c.required) for c in info.signature.inputs.inputs}
    assert inputs == {
        "unique_id": ("string", False),
        "ds": ("datetime", True),
        "y": ("double", True),
    }
    example = mlflow.pyfunc.load_model(model_uri).input_example
    assert list(example.columns) == ["unique_id", "ds", "y"]
    assert len(example) == LOOKBACK


def test_load_model_forecasts_every_unique_id(logged, series):
    _, model_uri = logged
    model = mlflow.pyfunc.load_model(model_uri)
    both = model.predict(two_series(series), params={"horizon": HORIZON})
    assert both["unique_id"].tolist() == ["a"] * HORIZON + ["b"] * HORIZON
    assert both["ds"].iloc[HORIZON] == series["ds"].iloc[1420]
    alone = model.predict(series.iloc[1350:1420], params={"horizon": HORIZON})
    assert (alone["unique_id"] == "ETTh1").all()  # no unique_id: as before
    np.testing.assert_allclose(both["yhat"].iloc[HORIZON:], alone["yhat"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_forecasts_every_unique_id(logged, series, tmp_path):
    uri, model_uri = logged
    port = _free_port()
    bin_dir = Path(sys.executable).parent  # mlflow runs uvicorn from PATH
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    cmd = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(tmp_path / "serve.log", "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "serve.log"
            ).read_text()[-3000:]
            time.sleep(0.3)
        frame = two_series(series).assign(ds=lambda f: f["ds"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
        body = {
            "dataframe_split": json.loads(frame.to_json(orient="split", index=False)),
            "params": {"horizon": 2},
        }
        resp = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        preds = resp.json()["predictions"]
        assert [p["unique_id"] for p in preds] == ["a", "a", "b", "b"]
        assert [p["step"] for p in preds] == [1, 2, 1, 2]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
