"""The ``tidemill`` command.

tidemill train --config configs/etth1.yaml   the training pipeline in this process (any task:
                                              forecast, classification, regression, anomaly)
tidemill demo [--drift]                       train (real forecast_training DAG runs), serve,
                                              predict from both variants, promote; --drift
                                              replays shifted data through drift_monitor
tidemill serve                                the local serving stack on 127.0.0.1
tidemill up | down | status                   the whole local platform (Airflow, MLflow UI,
                                              serving, platform API, Prometheus, Feast's
                                              feature server) on 127.0.0.1
tidemill features sync [--ai4i CSV] [--etth1 CSV] [--end ISO]
                                              publish feature views to Feast and materialise
                                              every view (a feature_materialize run)
tidemill features serve [--port 6566]         Feast's feature server (entity lookups of
                                              serving)
tidemill api upload|datasets|dataset|clean|select-features|split|train|job|deployed|deploy|
             promote|rollback
                                              the platform API through tidemill.client
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.home import HOME_ENV, TidemillHome
from tidemill.airflow_runs import BIN, REPO

DEFAULT_CONFIG = REPO / "configs" / "etth1.yaml"


def metrics_table(tracking_uri: str, registered_name: str) -> tuple[str, dict[str, Any]]:
    """Per-algorithm metrics of the pipeline run behind the newest registered version."""
    from mlflow import MlflowClient

    from pipelines.registry import filter_literal

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    versions = client.search_model_versions(f"name={filter_literal(registered_name, 'model')}")
    latest = max(versions, key=lambda v: int(v.version))
    pipeline_run = latest.tags["tidemill.pipeline_run"]
    runs = client.search_runs(
        [client.get_run(latest.run_id).info.experiment_id],
        filter_string=f"tags.`tidemill.pipeline_run` = {filter_literal(pipeline_run, 'run')}",
    )
    owa = any("test_owa" in r.data.metrics for r in runs)  # a panel: OWA vs Naive2 too
    header = (
        f"{'algorithm':<15}{'val MAE':>9}{'select':>9}{'test MAE':>10}{'test RMSE':>10}"
        f"{'sMAPE%':>8}{'WAPE%':>8}{'MASE':>7}{'cover':>7}" + (f"{'OWA':>7}" if owa else "")
    )
    metric = next((r.data.tags["tidemill.selection_metric"] for r in runs
                   if "tidemill.selection_metric" in r.data.tags), None)
    lines = [header + (f"  (select: validation {metric})" if metric else ""), "-" * len(header)]
    # ranked as selected (the selection score; runs logged before it existed: val MAE)
    for run in sorted(runs, key=lambda r: r.data.metrics.get(
            "selection_score", r.data.metrics.get("val_mae", 1e9))):
        m = run.data.metrics
        lines.append(
            f"{run.data.tags.get('tidemill.algorithm', '?'):<15}{m.get('val_mae', 0):>9.3f}"
            f"{m.get('selection_score', float('nan')):>9.3f}"
            f"{m.get('test_mae', 0):>10.3f}{m.get('test_rmse', 0):>10.3f}"
            f"{m.get('test_smape', 0):>8.2f}{m.get('test_wape', 0):>8.2f}"
            f"{m.get('test_mase', 0):>7.2f}{m.get('test_coverage', 0):>7.2f}"
            + (f"{m.get('test_owa', 0):>7.3f}" if owa else "")
        )
    info = {
        "name": registered_name,
        "version": latest.version,
        "aliases": sorted(client.get_model_version(registered_name, latest.version).aliases),
        "algorithm": latest.tags.get("tidemill.algorithm"),
    }
    return "\n".join(lines), info


def print_summary(home: TidemillHome, tracking_uri: str, registered_name: str) -> None:
    table, info = metrics_table(tracking_uri, registered_name)
    print("\nCandidates (original units; select = the validation score they are ranked on, "
          "test = held out):")
    print(table)
    print(
        f"\nRegistered: {info['name']} version {info['version']} ({info['algorithm']}), "
        f"aliases: {', '.join(info['aliases']) or '-'}"
    )
    print("\nOpen the UIs on this home:")
    print(
        f"  MLflow:  {BIN / 'mlflow'} ui --backend-store-uri {tracking_uri} "
        f"--host 127.0.0.1 --port 5000"
    )
    print(
        f"  Airflow: AIRFLOW_HOME={home.airflow_home} AIRFLOW__CORE__DAGS_FOLDER={REPO / 'dags'}"
        f" AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__PARALLELISM=4 "
        f"{BIN / 'airflow'} standalone   (login in {home.airflow_home}/"
        "simple_auth_manager_passwords.json.generated)"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.experiment import task_of
    from pipelines.registry import tracking_uri
    from pipelines.workflow import run_pipeline

    home = TidemillHome.resolve(args.home)
    os.environ[HOME_ENV] = str(home.root)  # what the run reads from the home (feature store)
    if task_of(args.config) != "forecast":
        from tidemill.tabular_summary import train_tabular

        return train_tabular(args.config, home, args.algorithms, args.trials)
    result = run_pipeline(
        args.config, home, algorithms=args.algorithms, n_trials=args.trials, horizon=args.horizon
    )
    cfg = load_config(args.config)
    print_summary(home, tracking_uri(cfg, home), result["registered"]["name"])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tidemill import demo

    home = TidemillHome.resolve(args.home)
    os.environ[HOME_ENV] = str(home.root)
    started = time.perf_counter()
    print(f"[demo] Tidemill home: {home.root}")
    config = Path(args.config).resolve()
    demo.run(
        config,
        home,
        args.drift,
        args.trials,
        args.horizon,
        args.algorithms,
        args.challenger_algorithms,
        args.panel_series,
    )
    print(f"\n[demo] done in {time.perf_counter() - started:.0f}s")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The local serving stack (serving environment) in the foreground."""
    home = TidemillHome.resolve(args.home)
    python = REPO / ".venv" / "serving" / "bin" / "python"
    cmd = [str(python), "-m", "serving.stack", "--home", str(home.root), *args.stack_args]
    return subprocess.call(cmd, env={**os.environ, HOME_ENV: str(home.root)})


def cmd_features(args: argparse.Namespace) -> int:
    """Feast: publish and materialise the feature views, or run the feature server."""
    from pipelines import feature_store

    home = TidemillHome.resolve(args.home)
    if args.action == "serve":
        feature_store.serve(home, args.host, args.port)
        return 0
    # what a feature_materialize DAG run does: publish the CSVs given, materialise every view
    feature_store.publish_csvs(home, {feature_store.ETTH1_VIEW: args.etth1,
                                      feature_store.AI4I_VIEW: args.ai4i})
    feature_store.materialize(home, feature_store.MATERIALIZE_FROM,
                              feature_store.materialize_end(args.end))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from tidemill.platform import PlatformError, Ports, up

    ports = Ports(
        airflow=args.airflow_port,
        mlflow=args.mlflow_port,
        router=args.router_port,
        control=args.control_port,
        prometheus=args.prometheus_port,
        platform_api=args.platform_api_port,
        features=args.features_port,
    )
    try:
        up(args.home, ports, serving_workers=args.workers)
    except PlatformError as exc:
        print(f"tidemill up: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from tidemill.platform import down

    down(args.home)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tidemill.platform import status

    running = status(args.home)
    return 0 if running and all(running.values()) else 1


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidemill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (
        ("train", cmd_train, "run the training pipeline in this process (no Airflow)"),
        ("demo", cmd_demo, "train, serve, predict, promote (and --drift) through Airflow"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=str(DEFAULT_CONFIG), help="experiment YAML")
        p.add_argument(
            "--home", default=None, help=f"Tidemill home (default ${HOME_ENV} or ./.tidemill)"
        )
        p.add_argument("--algorithms", type=_csv, default=None, help="comma-separated subset")
        p.add_argument("--trials", type=int, default=None, help="Optuna trials per algorithm")
        p.add_argument("--horizon", type=int, default=None, help="forecast horizon")
        p.set_defaults(func=func)
        if name == "demo":
            p.add_argument(
                "--drift",
                action="store_true",
                help="also replay shifted data through drift_monitor and retrain",
            )
            p.add_argument(
                "--challenger-algorithms",
                type=_csv,
                default=["xgboost", "lstm"],
                help="what the second training run trains (the challenger)",
            )
            p.add_argument(
                "--panel-series",
                type=int,
                default=12,
                help="M4 hourly series of the many-series run at the end (0 skips it)",
            )
    serve = sub.add_parser("serve", help="start the local serving stack (router, control API)")
    serve.add_argument("--home", default=None, help="Tidemill home")
    serve.add_argument(
        "stack_args",
        nargs=argparse.REMAINDER,
        help="passed to python -m serving.stack (--port, --workers, ...)",
    )
    serve.set_defaults(func=cmd_serve)
    features = sub.add_parser("features", help="Feast: sync feature views, feature server")
    features.add_argument("action", choices=["sync", "serve"])
    features.add_argument("--home", default=None, help="Tidemill home")
    features.add_argument("--ai4i", default=None, help="sync: AI4I 2020 CSV (ai4i_machine)")
    features.add_argument("--etth1", default=None, help="sync: ETTh1 CSV (etth1_covariates)")
    features.add_argument("--end", default=None, help="sync: materialise up to (ISO; now)")
    features.add_argument("--host", default="127.0.0.1", help="serve: bind address")
    features.add_argument("--port", type=int, default=6566, help="serve: port")
    features.set_defaults(func=cmd_features)
    up = sub.add_parser(
        "up",
        help="start the local platform: Airflow, MLflow UI, serving, Prometheus (all on 127.0.0.1)",
    )
    up.add_argument("--home", default=None, help="Tidemill home")
    up.add_argument("--airflow-port", type=int, default=8280)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.add_argument("--router-port", type=int, default=8080)
    up.add_argument("--control-port", type=int, default=8000)
    up.add_argument("--prometheus-port", type=int, default=9090)
    up.add_argument("--platform-api-port", type=int, default=8001)
    up.add_argument("--features-port", type=int, default=6566, help="Feast feature server")
    up.add_argument("--workers", type=int, default=1, help="serving router workers")
    up.set_defaults(func=cmd_up)
    for name, func, help_text in (
        ("down", cmd_down, "stop every process `tidemill up` started (and nothing else)"),
        ("status", cmd_status, "which platform processes are running"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--home", default=None, help="Tidemill home")
        p.set_defaults(func=func)
    from tidemill.api_cli import add_parser

    add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipelines.config import ConfigError
    from pipelines.data.validate import DataValidationError

    try:
        return args.func(args)
    except (ConfigError, DataValidationError) as exc:
        print(f"tidemill: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
