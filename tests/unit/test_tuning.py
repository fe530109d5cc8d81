"""Rolling-origin folds and search-space sampling."""

import numpy as np
import optuna
import pytest

from pipelines.config import AlgorithmConfig, SearchParam, TuningConfig
from pipelines.tuning import rolling_origin_folds, suggest, tune


def test_folds_expand_and_stay_inside():
    folds = rolling_origin_folds(n=1000, horizon=10, n_folds=3, min_train=400, max_origins=1000)
    assert [f.fit_end for f in folds] == [400, 600, 800]
    for fold in folds:
        assert fold.origins.min() == fold.fit_end
        assert fold.origins.max() + 10 <= fold.fit_end + 200
    capped = rolling_origin_folds(1000, 10, 3, 400, max_origins=5)
    assert all(len(f.origins) == 5 for f in capped)


def test_folds_too_short_is_clear():
    with pytest.raises(ValueError, match="folds of at least 11 rows"):
        rolling_origin_folds(n=100, horizon=10, n_folds=5, min_train=80, max_origins=10)


def test_suggest_types():
    space = {
        "a": SearchParam(type="int", low=1, high=3),
        "b": SearchParam(type="float", low=0.1, high=1.0, log=True),
        "c": SearchParam(type="categorical", choices=["x", "y"]),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest(study.ask(), space)
    assert 1 <= params["a"] <= 3 and isinstance(params["a"], int)
    assert 0.1 <= params["b"] <= 1.0
    assert params["c"] in {"x", "y"}


def test_study_resumes_from_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    y = np.sin(np.arange(600) * 2 * np.pi / 24) + np.random.default_rng(0).normal(0, 0.1, 600)
    algo = AlgorithmConfig(
        params={}, search_space={"season": SearchParam(type="int", low=12, high=48, step=12)}
    )
    cfg = TuningConfig(n_trials=3, cv_folds=2, seed=1)
    first = tune("seasonal_naive", algo, y, None, 12, cfg, storage, "s", 1.0, min_train=100)
    assert first.n_trials == 3
    more = cfg.model_copy(update={"n_trials": 5})
    second = tune("seasonal_naive", algo, y, None, 12, more, storage, "s", 1.0, min_train=100)
    assert second.n_trials == 5  # resumed: only two new trials were added
    assert second.best_params["season"] in (24, 48)  # a multiple of the true period wins
