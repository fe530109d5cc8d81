"""The shipped ``configs/etth1_exog.yaml`` (on a slice) through the real pipeline
(``tidemill train``: ingest → preprocess → tune → train → select → register) into a real
MLflow store: the models that use regressors record them in their bundle and run, the
registered version (and the ensemble of the best two) loads as a pyfunc and forecasts its
logged example (load columns beside the history), and the same run without regressors
forecasts differently. Models opted out (``algorithms.<name>.exogenous: false``: lightgbm and
the LSTM) forecast exactly as in the run without regressors while the others still use them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipelines.registry import check_version

from .conftest import BIN, REPO


def _train(root: Path, name: str, exogenous: bool) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "etth1_exog.yaml").read_text())
    cfg["data"]["source"]["path"] = str(REPO / "data" / "ETTh1.csv")
    cfg["data"]["rows"] = {"start": 0, "stop": 2400}
    cfg["split"] = {"val_size": 300, "test_size": 300}
    cfg["algorithms"] = {
        "seasonal_naive": cfg["algorithms"]["seasonal_naive"],
        "nlinear": {"params": {"lookback": 96, "exog_lags": 24},  # tuned with the regressors
                    "search_space": {"alpha": {"type": "float", "low": 1, "high": 100}}},
        "xgboost": {"params": {"lookback": 48, "n_estimators": 30, "exog_lags": 3}},
        "lightgbm": {"params": {"lookback": 48, "n_estimators": 30}, "exogenous": False},
        "lstm": {"params": {"lookback": 24, "units": 8, "epochs": 2, "batch_size": 128},
                 "exogenous": False},
    }
    cfg["tuning"] = {"n_trials": 1, "cv_folds": 2}
    cfg["ensemble"] = {"enabled": True, "top_k": 2}
    if not exogenous:  # the comparisons need nlinear and the opted-out models only
        del cfg["data"]["exogenous"]
        cfg["algorithms"] = {"nlinear": cfg["algorithms"]["nlinear"],
                             **{name: {"params": cfg["algorithms"][name]["params"]}
                                for name in ("lightgbm", "lstm")}}
        cfg["ensemble"] = {"enabled": False}
    cfg["mlflow"] = {"experiment": name, "registered_model_name": name}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    done = subprocess.run([str(BIN / "tidemill"), "train", "--config", str(root / f"{name}.yaml"),
                           "--home", str(root / name)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exog-pipeline")
    return {name: _train(root, name, exogenous=name == "etth1-exog")
            for name in ("etth1-exog", "etth1-plain")}


def _client(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def _candidates(home: Path, experiment: str) -> dict[str, object]:
    client = _client(home)
    exp = client.get_experiment_by_name(experiment)
    return {r.data.params["algorithm"]: r for r in client.search_runs([exp.experiment_id])}


def test_models_that_use_regressors_record_them_and_the_version_serves(runs) -> None:
    home = runs["etth1-exog"]
    with_x = _candidates(home, "etth1-exog")
    declared = {"historical": ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"], "future": [],
                "calendar": ["hour_of_day", "day_of_week"]}
    for algorithm in ("nlinear", "xgboost", "ensemble"):  # the ensemble of the best two
        assert json.loads(with_x[algorithm].data.params["exogenous"]) == declared
    assert "exogenous" not in with_x["seasonal_naive"].data.params
    bundles = sorted((home / "runs").glob("*/candidates/*/bundle/bundle.json"))
    meta = {p.parent.parent.name: json.loads(p.read_text()) for p in bundles}
    assert meta["nlinear"]["exogenous"] == meta["ensemble"]["exogenous"] == declared
    assert meta["seasonal_naive"]["exogenous"] is None

    client = _client(home)
    version = client.get_model_version_by_alias("etth1-exog", "champion")
    check_version(f"sqlite:///{home / 'mlflow.db'}", "etth1-exog", version.version)
    run = with_x["ensemble"].info
    logged = next(m for m in client.search_logged_models([run.experiment_id])
                  if m.source_run_id == run.run_id)
    ensemble = client.create_model_version("etth1-exog", logged.model_uri, run.run_id)
    check_version(f"sqlite:///{home / 'mlflow.db'}", "etth1-exog", ensemble.version)


def test_regressors_change_the_pipelines_forecasts(runs) -> None:
    with_x = _candidates(runs["etth1-exog"], "etth1-exog")["nlinear"].data.metrics
    plain = _candidates(runs["etth1-plain"], "etth1-plain")["nlinear"].data.metrics
    assert with_x["test_mae"] != pytest.approx(plain["test_mae"], rel=1e-3)
    assert with_x["val_mae"] != pytest.approx(plain["val_mae"], rel=1e-3)


def _evaluation(home: Path, algorithm: str) -> dict:
    (path,) = (home / "runs").glob(f"*/candidates/{algorithm}/evaluation.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("algorithm", ["lightgbm", "lstm"])
def test_an_opted_out_model_forecasts_as_without_regressors(runs, algorithm) -> None:
    with_x, plain = runs["etth1-exog"], runs["etth1-plain"]
    opted_out = _candidates(with_x, "etth1-exog")[algorithm].data
    assert "exogenous" not in opted_out.params
    (bundle,) = (with_x / "runs").glob(f"*/candidates/{algorithm}/bundle/bundle.json")
    assert json.loads(bundle.read_text())["exogenous"] is None
    # every validation and test window forecast alike: the same per-step errors, to the bit
    assert _evaluation(with_x, algorithm) == _evaluation(plain, algorithm)
    # while nlinear, in the same run, still forecasts with them
    assert _evaluation(with_x, "nlinear") != _evaluation(plain, "nlinear")
