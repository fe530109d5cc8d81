"""``tidemill demo``: the whole platform on the embedded default, step by step.

1. train: the real ``forecast_training`` DAG (``airflow dags test``) on bundled ETTh1 →
   version 1, champion.
2. retrain a second set of algorithms → a challenger.
3. serve: the local KServe stack (router with champion and challenger, control API); sample
   requests from several callers; the answers of both variants.
4. promote: the ``promote_challenger`` DAG weighs backtest and live A/B evidence.
5. with ``--drift``: replay later ETTh1 rows with an injected level shift through
   ``drift_monitor`` (report path, triggered retraining), run the triggered retraining with its
   conf, then ``promote_challenger`` again (promotion or refusal).
8. many series: the same ``forecast_training`` DAG on a slice of M4 hourly (``--panel-series``,
   0 skips it): local and global models and their ensemble, per-series metrics, OWA vs Naive2.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipelines.config import load_config
from pipelines.home import TidemillHome
from pipelines.registry import tracking_uri
from tidemill.airflow_runs import queued_conf, run_dag_test

REPO = Path(__file__).resolve().parent.parent
M4_HOURLY = REPO / "data" / "m4" / "hourly_long.parquet"
PANEL_HOURS = 600  # per series: a 168-hour lookback, two CV folds, validation and test
SERVING_PYTHON = REPO / ".venv" / "serving" / "bin" / "python"
STACK_TIMEOUT_S = 300


def _header(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _dag(home: TidemillHome, dag_id: str, conf: dict[str, Any], tag: str) -> None:
    log = home.root / "logs" / f"demo-{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    rc = run_dag_test(home, dag_id, conf, log)
    if rc != 0:
        raise RuntimeError(f"{dag_id} failed (exit {rc}); see {log}")


def start_stack(home: TidemillHome, challenger_percent: int) -> tuple[subprocess.Popen, dict]:
    """The serving stack from the serving environment, in its own process group."""
    stack_file = home.root / "serving" / "stack.json"
    stack_file.unlink(missing_ok=True)
    ports = ["--port", str(free_port()), "--control-port", str(free_port())]
    log_path = home.root / "logs" / "demo-serving.log"
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                str(SERVING_PYTHON),
                "-m",
                "serving.stack",
                "--home",
                str(home.root),
                "--challenger-percent",
                str(challenger_percent),
                *ports,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TIDEMILL_HOME": str(home.root)},
        )
    deadline = time.monotonic() + STACK_TIMEOUT_S
    while not stack_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_stack(proc)
            raise RuntimeError(f"the serving stack did not start; see {log_path}")
        time.sleep(0.5)
    return proc, json.loads(stack_file.read_text())


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_stack(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def shifted_batch(
    config_path: Path, home: TidemillHome, rows: int = 168, shift_std: float = 2.0
) -> Path:
    """ETTh1 rows after the configured slice, with OT shifted by ``shift_std`` train stds."""
    cfg = load_config(config_path)
    source = pd.read_csv(cfg.data.source.path)
    start = cfg.data.rows.stop if cfg.data.rows and cfg.data.rows.stop else len(source) - rows
    batch = source.iloc[start : start + rows].copy()
    train_std = source[cfg.data.target_column].iloc[: cfg.split.train_size or start].std()
    batch[cfg.data.target_column] += shift_std * train_std
    path = home.root / "replay" / f"etth1-rows-{start}-shifted-{shift_std:g}sd.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    batch.to_csv(path, index=False)
    return path


def replay_config(config_path: Path, batch: Path, home: TidemillHome) -> Path:
    """A copy of the experiment whose source is the configured rows plus the replayed batch
    (the data a scheduled ingest would see after the batch arrived)."""
    cfg = load_config(config_path)
    source = pd.read_csv(cfg.data.source.path)
    rows = cfg.data.rows
    used = source.iloc[rows.start : rows.stop] if rows else source
    combined = home.root / "replay" / f"{cfg.name}-with-{batch.stem}.csv"
    pd.concat([used, pd.read_csv(batch)], ignore_index=True).to_csv(combined, index=False)
    data = cfg.model_dump(mode="json")
    data["data"]["source"]["path"] = str(combined)
    data["data"]["rows"] = None
    path = combined.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def panel_config(home: TidemillHome, series: int) -> Path:
    """``configs/m4_hourly.yaml`` on the first ``series`` M4 hourly series (their last
    ``PANEL_HOURS`` hours), with the fast local and global models, one trial each."""
    data = pd.read_parquet(M4_HOURLY)
    ids = list(dict.fromkeys(data["unique_id"]))[:series]
    data = data[data["unique_id"].isin(ids)].groupby("unique_id", sort=False).tail(PANEL_HOURS)
    folder = home.root / "demo-panel"
    folder.mkdir(parents=True, exist_ok=True)
    data.to_parquet(folder / "m4-hourly-slice.parquet", index=False)
    cfg = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    cfg["name"] = "demo-m4-hourly"
    cfg["data"]["source"]["path"] = str(folder / "m4-hourly-slice.parquet")
    cfg["algorithms"] = {
        "seasonal_naive": cfg["algorithms"]["seasonal_naive"],
        "nlinear": {"params": {"lookback": 168, "window_scale": "seasonal"},  # alpha searched
                    "search_space": {"alpha": cfg["algorithms"]["nlinear"]["search_space"][
                        "alpha"]}},
        "lightgbm": {**cfg["algorithms"]["lightgbm"], "params": {"lookback": 168,
                                                                   "n_estimators": 100}},
    }
    cfg["ensemble"] = {"enabled": True, "top_k": 2, "combine": "mean"}
    cfg["tuning"] = {**cfg["tuning"], "n_trials": 1}
    cfg["mlflow"] = {"experiment": "tidemill-demo-m4", "registered_model_name": "tidemill-demo-m4"}
    path = folder / "m4-hourly-slice.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(
    config: Path,
    home: TidemillHome,
    drift: bool,
    trials: int | None,
    horizon: int | None,
    algorithms: list[str] | None,
    challenger_algorithms: list[str],
    panel_series: int = 0,
) -> dict[str, Any]:
    """The demo; returns what it showed (for the caller's summary)."""
    from mlflow import MlflowClient

    from tidemill.cli import print_summary

    (home.root / "logs").mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    uri = tracking_uri(cfg, home)
    name = cfg.mlflow.registered_model_name
    base = {"config": str(config), "n_trials": trials, "horizon": horizon}

    _header("1. train: forecast_training DAG on bundled ETTh1")
    _dag(
        home,
        "forecast_training",
        {**base, "algorithms": algorithms or [], "reason": "tidemill demo"},
        "train",
    )
    print_summary(home, uri, name)

    _header(f"2. retrain {', '.join(challenger_algorithms)} for a challenger")
    _dag(
        home,
        "forecast_training",
        {**base, "algorithms": challenger_algorithms, "reason": "tidemill demo: challenger"},
        "retrain",
    )
    aliases = MlflowClient(uri, registry_uri=uri).get_registered_model(name).aliases
    print(f"aliases now: {aliases}")

    _header("3. serve: champion and challenger behind the local router (30% canary)")
    proc, stack = start_stack(home, challenger_percent=30)
    try:
        print(json.dumps({k: v for k, v in stack.items() if k != "token"}, indent=2))
        from serving.demo_client import run_demo

        run_demo(
            stack.get("router", "http://127.0.0.1:8080"),
            stack.get("endpoint", "tidemill-forecaster"),
        )

        _header("4. promote_challenger: backtest + live A/B evidence, Diebold-Mariano test")
        _dag(home, "promote_challenger", {"config": str(config)}, "promote")
        print(
            f"aliases now: {MlflowClient(uri, registry_uri=uri).get_registered_model(name).aliases}"
        )

        if drift:
            _drift(config, home, base, uri, name)
    finally:
        stop_stack(proc)
    if panel_series:
        _panel(home, panel_series)
    return {"aliases": MlflowClient(uri, registry_uri=uri).get_registered_model(name).aliases}


def _panel(home: TidemillHome, series: int) -> None:
    from tidemill.cli import print_summary

    config = panel_config(home, series)
    _header(f"8. many series: forecast_training on {series} M4 hourly series ({config.name})")
    _dag(home, "forecast_training", {"config": str(config), "reason": "tidemill demo: panel"},
         "panel")  # fmt: skip
    cfg = load_config(config)
    print_summary(home, tracking_uri(cfg, home), cfg.mlflow.registered_model_name)


def _drift(config: Path, home: TidemillHome, base: dict[str, Any], uri: str, name: str) -> None:
    from mlflow import MlflowClient

    batch = shifted_batch(config, home)
    _header(f"5. drift_monitor on replayed later rows with a level shift: {batch.name}")
    _dag(home, "drift_monitor", {"config": str(config), "current_path": str(batch)}, "drift")
    reports = sorted((home.reports_dir / name).glob("*/"))
    if reports:
        print(f"drift report: {reports[-1]}")
    conf = queued_conf(home, "forecast_training")
    if conf is None:
        print("no retraining was triggered")
        return
    print(f"triggered retraining, reason: {conf['reason']}")
    replayed = replay_config(config, batch, home)
    _header(f"6. the triggered retraining, on the source plus the replayed rows ({replayed.name})")
    retrain = {**base, **conf, "config": str(replayed), "algorithms": ["nlinear", "arima"]}
    _dag(home, "forecast_training", retrain, "drift-retrain")
    _header("7. promote_challenger on the retrained challenger (backtest on the newest rows)")
    _dag(
        home, "promote_challenger", {"config": str(replayed), "backtest_rows": 144}, "drift-promote"
    )
    print(f"aliases now: {MlflowClient(uri, registry_uri=uri).get_registered_model(name).aliases}")
