"""Every registered tabular algorithm fits and predicts on a small real slice."""

from pathlib import Path

import numpy as np
import pytest

from pipelines.tabular.algorithms.registry import ALGORITHMS, fit_estimator
from pipelines.tabular.config import load_tabular_config
from pipelines.tabular.data import read_table, validate_table
from pipelines.tabular.preprocess import fit_model

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "lightgbm": {"n_estimators": 30},
    "decision_tree": {"max_depth": 3},
    "xgboost": {"n_estimators": 30},
    "random_forest": {"n_estimators": 20},
    "gradient_boosting": {"n_estimators": 20},
    "adaboost": {"n_estimators": 20},
    "isolation_forest": {"n_estimators": 50},
    "voting": {
        "member_params": {"lightgbm": {"n_estimators": 20}, "random_forest": {"n_estimators": 10}}
    },
    "stacking": {
        "member_params": {"lightgbm": {"n_estimators": 20}, "random_forest": {"n_estimators": 10}}
    },
}


def _slice(name: str, rows: int, **changes):
    cfg = load_tabular_config(REPO / "configs" / name)
    data = cfg.model_dump(mode="json")
    data["data"]["rows"] = {"start": 0, "stop": rows}
    for key, value in changes.items():
        data[key] = value
    cfg = type(cfg).model_validate(data)
    v = validate_table(read_table(cfg.data), cfg)
    X = v.frame[v.numeric + v.categorical]
    y = v.frame[cfg.data.target_column].to_numpy()
    return cfg, v, X, y


@pytest.fixture(scope="module")
def ai4i():
    # 1,500 rows hold 35 failures: enough positives for every learner
    return _slice("ai4i_classification.yaml", 1500, feature_selection={"method": "none"})


@pytest.fixture(scope="module")
def diabetes():
    return _slice("diabetes_regression.yaml", 300)


def _algorithms(task):
    return sorted(a for a, (_, tasks) in ALGORITHMS.items() if task in tasks)


@pytest.mark.parametrize("algorithm", _algorithms("classification"))
def test_classifier_fits_and_predicts(ai4i, algorithm):
    cfg, v, X, y = ai4i
    fitted = fit_model(
        algorithm, SMALL.get(algorithm, {}), X[:1000], y[:1000], v.numeric, v.categorical, cfg
    )
    proba = fitted.pipeline.predict_proba(X[1000:])
    assert proba.shape == (500, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # better than chance at ranking failures on unseen rows
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[1000:], proba[:, 1]) > 0.6, algorithm


@pytest.mark.parametrize("algorithm", _algorithms("regression"))
def test_regressor_fits_and_predicts(diabetes, algorithm):
    cfg, v, X, y = diabetes
    fitted = fit_model(
        algorithm, SMALL.get(algorithm, {}), X[:200], y[:200], v.numeric, v.categorical, cfg
    )
    pred = fitted.pipeline.predict(X[200:])
    assert pred.shape == (100,) and np.isfinite(pred).all()
    # beats predicting the training mean
    base = np.mean((y[200:] - y[:200].mean()) ** 2)
    assert np.mean((y[200:] - pred) ** 2) < base, algorithm


def test_isolation_forest_scores_failures_higher(ai4i):
    cfg, v, X, y = ai4i
    fitted = fit_model(
        "isolation_forest",
        SMALL["isolation_forest"],
        X,
        None,
        v.numeric,
        v.categorical,
        cfg,
        task="anomaly",
    )
    scores = -fitted.pipeline.score_samples(X)
    assert scores[y == 1].mean() > scores[y == 0].mean()


@pytest.mark.parametrize("algorithm", ["lightgbm", "xgboost"])
def test_boosted_models_stop_early_and_return_loss_curves(ai4i, algorithm):
    cfg, v, X, y = ai4i
    fitted = fit_model(
        algorithm,
        {"n_estimators": 2000, "learning_rate": 0.3},
        X[:1000],
        y[:1000],
        v.numeric,
        v.categorical,
        cfg,
        eval_set=(X[1000:], y[1000:]),
    )
    valid = next(c for k, c in fitted.curves.items() if k.startswith("valid"))
    assert len(valid) < 2000  # patience stopped it
    assert len(fitted.curves) == 2


def test_knn_ignores_class_weights_and_says_so(ai4i, capsys):
    cfg, v, X, y = ai4i
    fit_model("knn", {}, X[:300], y[:300], v.numeric, v.categorical, cfg)
    assert "knn takes no sample weights" in capsys.readouterr().out


def test_fit_estimator_passes_weights():
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    est = LogisticRegression()
    fit_estimator("logistic_regression", est, X, y, sample_weight=np.ones(4))
    assert est.predict([[3.0]])[0] == 1
