"""Tabular tuning: grid and random samplers, CV splitters, chronological split."""

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import yaml

from pipelines.config import AlgorithmConfig
from pipelines.tabular.config import parse_tabular_config
from pipelines.tabular.data import split_parts
from pipelines.tabular.tuning import cv_splits, tune

REPO = Path(__file__).resolve().parents[2]


def _cfg(**changes):
    data = yaml.safe_load((REPO / "configs" / "diabetes_regression.yaml").read_text())
    data |= changes
    return parse_tabular_config(data)


def _diabetes():
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    numeric = [c for c in frame.columns if c not in ("target", "sex")]
    X = frame[[*numeric, "sex"]].assign(sex=frame["sex"].astype(str))
    return X, frame["target"].to_numpy(float), numeric


def test_grid_search_tries_each_point_once(tmp_path, capsys):
    cfg = _cfg(
        tuning={"method": "grid", "n_trials": 10, "metric": "rmse"},
        feature_selection={"method": "none"},
        algorithms={"knn": {}},
    )
    X, y, numeric = _diabetes()
    space = {"n_neighbors": {"type": "int", "low": 5, "high": 25, "step": 10}}
    result = tune(
        "knn", AlgorithmConfig(search_space=space), X, y, numeric, ["sex"], cfg,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="grid",
    )  # fmt: skip
    study = optuna.load_study(study_name="grid", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    tried = sorted(t.params["n_neighbors"] for t in study.trials)
    assert tried == [5, 15, 25]  # the grid is exhausted after 3 of the 10 trials
    assert result["best_params"]["n_neighbors"] in tried
    assert result["best_value"] == min(t.value for t in study.trials if t.value is not None)
    assert "[tune knn] trial 3/10" in capsys.readouterr().out


def test_random_search_resumes_its_study(tmp_path):
    cfg = _cfg(tuning={"method": "random", "n_trials": 2, "metric": "r2"})
    X, y, numeric = _diabetes()
    space = {"alpha": {"type": "float", "low": 0.1, "high": 10, "log": True}}
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tune("ridge", AlgorithmConfig(search_space=space), X, y, numeric, ["sex"], cfg,
                 storage=storage, study_name="rnd")  # fmt: skip
    again = tune("ridge", AlgorithmConfig(search_space=space), X, y, numeric, ["sex"], cfg,
                 storage=storage, study_name="rnd")  # fmt: skip
    assert first["n_trials"] == again["n_trials"] == 2  # nothing rerun
    assert 0 < first["best_value"] < 1  # r2, maximised


def test_cv_splitters_and_chronological_split():
    frame = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=20, freq="D")[::-1], "y": [0, 1] * 10}
    )
    cfg = _cfg(data={"source": {"kind": "sklearn", "name": "diabetes"}, "target_column": "y",
                     "time_column": "t"}, cv={"method": "timeseries", "folds": 3})  # fmt: skip
    parts = split_parts(frame, cfg)
    # rows are newest first: the oldest 12 train, the next 4 validate, the newest 4 test
    assert parts.tolist() == ["test"] * 4 + ["val"] * 4 + ["train"] * 12
    folds = cv_splits(cfg, frame, None)
    assert len(folds) == 3 and all(fit.max() < held.min() for fit, held in folds)
    strat = _cfg(task="classification", algorithms={"naive_bayes": {}}, tuning={},
                 feature_selection={}, cv={"method": "stratified", "folds": 2})  # fmt: skip
    y = np.array([0] * 16 + [1] * 4)
    for _, held in cv_splits(strat, frame, y):
        assert y[held].sum() == 2
