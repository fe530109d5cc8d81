"""``tidemill api ...``: the platform API's verbs through ``tidemill.client`` (JSON out).

tidemill api upload data/ai4i2020.csv --name ai4i --target "Machine failure"
tidemill api datasets | dataset ID
tidemill api clean ID [--drop-columns a,b]
tidemill api select-features ID --task T --method M | split ID --task T
tidemill api compare ID --task classification --algorithms random_forest,lightgbm
tidemill api train ID --task classification --algorithms random_forest --trials 2 --wait
tidemill api tune ID --task T --algorithms A --search-spaces '{"A": {...}}' --trials 5 --wait
tidemill api job JOB_ID [--wait]
tidemill api deployed [--name N] | deploy MODEL VERSION --canary-percent P | promote MODEL
tidemill api rollback MODEL [--to-version V]
tidemill api ab-test MODEL VERSION --split 20 --minutes 60 [--name price-test-q4]
tidemill api ab-test-status TEST_ID_OR_NAME
tidemill api predict [--model M | --ab-test TEST_ID_OR_NAME] --features '{"Torque": 40}'
                     [--user-id U]
tidemill api predict [--model M] --history history.csv --horizon 24 [--user-id U]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tidemill.client import DEFAULT_URL, TOKEN_ENV, URL_ENV, ApiError, JobFailed, TidemillClient


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, else $TIDEMILL_CONTROL_TOKEN, else the home's token file when present."""
    if args.token or os.environ.get(TOKEN_ENV):
        return args.token or os.environ[TOKEN_ENV]
    from pipelines.home import TidemillHome

    path = TidemillHome.resolve(args.home).root / "serving" / "control_token"
    return path.read_text().strip() if path.exists() else None


def run(args: argparse.Namespace) -> int:
    with TidemillClient(args.url, token=_token(args)) as api:
        try:
            out: Any = _dispatch(api, args)
        except ApiError as exc:
            print(f"tidemill api: {exc}", file=sys.stderr)
            return 1
        except JobFailed as exc:
            print(json.dumps(asdict(exc.job), indent=2))
            print(f"tidemill api: {exc}", file=sys.stderr)
            return 1
    shown = [_plain(i) for i in out] if isinstance(out, list) else _plain(out)
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _plain(item: Any) -> Any:
    return item if isinstance(item, dict) else asdict(item)


def _predict(api: TidemillClient, args: argparse.Namespace) -> dict[str, Any]:
    """``--features`` (JSON: one record or a list) or ``--history`` (a CSV whose first two
    columns are timestamp and value) with ``--horizon``."""
    if (args.features is None) == (args.history is None):
        raise SystemExit("tidemill api predict: give either --features or --history")
    history = None
    if args.history is not None:
        if args.horizon is None:
            raise SystemExit("tidemill api predict: --history needs --horizon")
        import pandas as pd

        frame = pd.read_csv(args.history)
        history = [(str(t), float(v)) for t, v in frame.iloc[:, :2].itertuples(index=False)]
    return api.predict(history, args.horizon, features=args.features, user_id=args.user_id,
                       model_version=args.version, model_name=args.model,
                       ab_test=args.ab_test)  # fmt: skip


def _dispatch(api: TidemillClient, args: argparse.Namespace) -> Any:
    verb = args.verb
    if verb == "upload":
        return api.upload_dataset(args.file, args.name, args.target)
    if verb == "datasets":
        return api.datasets(args.name)
    if verb == "dataset":
        return api.dataset(args.id)
    if verb == "clean":
        return api.clean(args.id, numeric_imputation=args.numeric_imputation,
                         categorical_imputation=args.categorical_imputation,
                         drop_columns=args.drop_columns)  # fmt: skip
    if verb == "select-features":
        return api.select_features(args.id, task=args.task, method=args.method,
                                   n_features=args.n_features)  # fmt: skip
    if verb == "split":
        return api.split(args.id, task=args.task, val_size=args.val_size,
                         test_size=args.test_size, time_column=args.time_column)  # fmt: skip
    if verb == "train":
        job = api.train(args.id, task=args.task, algorithms=args.algorithms,
                        n_trials=args.trials)  # fmt: skip
        return api.wait(job.job_id) if args.wait else job
    if verb == "deployed":
        return api.deployed(args.name, args.status)
    if verb == "deploy":
        return api.deploy(args.model, args.version, args.canary_percent)
    if verb == "promote":
        return api.promote(args.model)
    if verb == "rollback":
        return api.rollback(args.model, args.to_version)
    if verb == "compare":
        return api.compare(args.id, task=args.task, algorithms=args.algorithms,
                           cv_folds=args.cv_folds)  # fmt: skip
    if verb == "tune":
        job = api.tune(args.id, task=args.task, algorithms=args.algorithms,
                       search_spaces=args.search_spaces, n_trials=args.trials)  # fmt: skip
        return api.wait(job.job_id) if args.wait else job
    if verb == "ab-test":
        return api.start_ab_test(args.model, args.version, args.split, args.minutes, args.metric,
                                 args.name)  # fmt: skip
    if verb == "ab-test-status":
        return api.ab_test(args.id)
    if verb == "predict":
        return _predict(api, args)
    return api.wait(args.id) if args.wait else api.job(args.id)


def add_parser(sub: Any) -> None:
    api = sub.add_parser("api", help="the platform API (datasets, training jobs) via the client",
                         description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    api.add_argument("--url", default=None, help=f"default ${URL_ENV} or {DEFAULT_URL}")
    api.add_argument("--token", default=None,
                     help=f"default ${TOKEN_ENV} or <home>/serving/control_token")  # fmt: skip
    api.add_argument("--home", default=None, help="Tidemill home (for the token file)")
    verbs = api.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("upload", help="upload a CSV, Excel or Parquet file")
    p.add_argument("file", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--target", default=None, help="target column")
    p = verbs.add_parser("datasets", help="every dataset version")
    p.add_argument("--name", default=None)
    verbs.add_parser("dataset", help="one version's profile").add_argument("id")
    p = verbs.add_parser("clean", help="a cleaned new version")
    p.add_argument("id")
    p.add_argument("--numeric-imputation", default="median")
    p.add_argument("--categorical-imputation", default="mode")
    p.add_argument("--drop-columns", type=_csv, default=[])
    p = verbs.add_parser("select-features", help="a new version with the selected features")
    p.add_argument("id")
    p.add_argument("--task", required=True, choices=["classification", "regression"])
    p.add_argument("--method", required=True)
    p.add_argument("--n-features", type=int, default=None)
    p = verbs.add_parser("split", help="a new version with a __split__ column")
    p.add_argument("id")
    p.add_argument("--task", required=True)
    p.add_argument("--val-size", type=float, default=0.2)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--time-column", default=None)
    p = verbs.add_parser("train", help="start a training job (a tabular_training DAG run)")
    p.add_argument("id", help="dataset id")
    p.add_argument("--task", required=True)
    p.add_argument("--algorithms", type=_csv, required=True)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--wait", action="store_true", help="wait with a progress bar")
    p = verbs.add_parser("job", help="a training job's status (and result)")
    p.add_argument("id")
    p.add_argument("--wait", action="store_true")
    p = verbs.add_parser("deployed", help="registered versions, aliases, live weights")
    p.add_argument("--name", default=None)
    p.add_argument("--status", default="all", choices=["champion", "challenger", "live", "all"])
    p = verbs.add_parser("deploy", help="a version becomes the challenger at a canary percent")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--canary-percent", type=int, required=True)
    verbs.add_parser("promote", help="the challenger becomes champion").add_argument("model")
    p = verbs.add_parser("rollback", help="back to the previous (or a named) champion")
    p.add_argument("model")
    p.add_argument("--to-version", default=None)
    p = verbs.add_parser("compare", help="cross-validated mean and std per algorithm")
    p.add_argument("id", help="dataset id")
    p.add_argument("--task", required=True)
    p.add_argument("--algorithms", type=_csv, required=True)
    p.add_argument("--cv-folds", type=int, default=5)
    p = verbs.add_parser("tune", help="start a tuning job (Optuna, grid or random search)")
    p.add_argument("id", help="dataset id")
    p.add_argument("--task", required=True)
    p.add_argument("--algorithms", type=_csv, required=True)
    p.add_argument("--search-spaces", type=json.loads, required=True,
                   help="JSON: algorithm -> parameter -> space")  # fmt: skip
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--wait", action="store_true", help="wait with a progress bar")
    p = verbs.add_parser("ab-test", help="deploy a challenger at a split and record the test")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--split", type=int, required=True, help="challenger percent")
    p.add_argument("--minutes", type=float, required=True, help="duration")
    p.add_argument("--metric", default="mae")
    p.add_argument("--name", default=None, help="unique test name (reads it like its id)")
    verbs.add_parser("ab-test-status", help="an A/B test's counts and errors").add_argument(
        "id", help="the test's id or name")
    p = verbs.add_parser("predict", help="a prediction through the serving router")
    p.add_argument("--model", default=None, help="registered model (default: the first)")
    p.add_argument("--ab-test", default=None, help="an A/B test's id or name: its model")
    p.add_argument("--features", type=json.loads, default=None, help="JSON record(s)")
    p.add_argument("--history", type=Path, default=None, help="CSV: timestamp, value")
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--user-id", default=None, help="key of the sticky split")
    p.add_argument("--version", default=None, help="a live version instead of the split")
    api.set_defaults(func=run)
