"""The tabular promotion gate on a real registry: a one-split decision tree (version 1,
champion) and LightGBM (version 2, challenger) trained on an AI4I 2020 slice, compared on the
test split of the run that trained the challenger with McNemar's exact test and with the
paired bootstrap on per-row log-loss."""

from __future__ import annotations

import math

import pytest
import yaml

from pipelines import artifact_store
from pipelines.home import TidemillHome
from pipelines.tabular.data import SPLIT_COLUMN
from pipelines.tabular.promotion import gate, load_version
from pipelines.tabular.workflow import run_pipeline
from tests.integration.test_tabular_training import NAME, small_config


def test_gate_compares_champion_and_challenger_on_the_test_split(tmp_path):
    path = small_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["algorithms"] = {"decision_tree": {"params": {"max_depth": 1}},
                          "lightgbm": {"params": {"n_estimators": 100}}}
    path.write_text(yaml.safe_dump(data))
    home = TidemillHome.resolve(tmp_path / "home")
    first = run_pipeline(path, home, run_key="stump", algorithms=["decision_tree"], n_trials=1)
    alone = gate(home.mlflow_uri, NAME, first["registered"]["version"])
    assert (alone["decision"], alone["champion"], alone["challenger"]) == ("keep", "1", None)
    second = run_pipeline(path, home, run_key="gbm", algorithms=["lightgbm"], n_trials=1)
    result = gate(home.mlflow_uri, NAME, "2")
    assert (result["champion"], result["challenger"], result["model"]) == ("1", "2", NAME)
    assert "not the challenger" in gate(home.mlflow_uri, NAME, "1")["reason"]

    # by hand: both versions predict the test rows; b = rows only the challenger gets right
    frame = artifact_store.read_parquet(second["prepared"]["prepared"])
    test = frame[frame[SPLIT_COLUMN] == "test"]
    y = test["Machine failure"].to_numpy()
    features = test[second["prepared"]["numeric"] + second["prepared"]["categorical"]]
    right = {v: load_version(home.mlflow_uri, NAME, v).predict(features)["prediction"]
             .to_numpy() == y for v in ("1", "2")}
    b, c = int((~right["1"] & right["2"]).sum()), int((right["1"] & ~right["2"]).sum())
    p = sum(math.comb(b + c, k) for k in range(b, b + c + 1)) / 2 ** (b + c)
    assert result["test_rows"] == result["n"] == len(test) == 800
    assert result["p_value"] == pytest.approx(p, rel=1e-9)
    assert result["decision"] == ("promote" if p < 0.05 else "keep")
    assert b > c and result["decision"] == "promote", result["reason"]

    # the bootstrap on log-loss: its mean differential is the difference of the two
    # versions' mean per-row log-loss on the same rows (scikit-learn's log_loss)
    from sklearn.metrics import log_loss

    boot = gate(home.mlflow_uri, NAME, "2", bootstrap=True)
    proba = {v: load_version(home.mlflow_uri, NAME, v).predict(features)["proba_1"] for v in "12"}
    by_hand = log_loss(y, proba["1"], labels=[0, 1]) - log_loss(y, proba["2"], labels=[0, 1])
    assert boot["mean_loss_diff"] == pytest.approx(by_hand, rel=1e-6)
    assert boot["decision"] == "promote" and "log-loss" in boot["reason"]
