"""Tabular metrics against values computed by hand; thresholds; grids; the bundle's checks."""

import numpy as np
import pandas as pd
import pytest

from pipelines.config import ConfigError, SearchParam
from pipelines.tabular import evaluation
from pipelines.tabular.bundle import TabularBundle, TabularInputError, predict_classes
from pipelines.tabular.tuning import grid_of


def test_binary_classification_metrics_by_hand():
    y = np.array([1, 1, 0, 0, 0, 1])
    p1 = np.array([0.9, 0.4, 0.6, 0.2, 0.1, 0.8])
    proba = np.column_stack([1 - p1, p1])
    pred = (p1 >= 0.5).astype(int)  # [1, 0, 1, 0, 0, 1]: TP 2, FN 1, FP 1, TN 2
    m = evaluation.classification_metrics(y, proba, pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    # ROC-AUC: of the 9 (positive, negative) pairs, 8 are ranked right (0.4 < 0.6 is not)
    assert m["roc_auc"] == pytest.approx(8 / 9)
    # PR-AUC (average precision): ranks 0.9 (P), 0.8 (P), 0.6 (N), 0.4 (P):
    # precision at each positive 1, 1, 3/4; mean over the 3 positives
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75) / 3)
    expected_ll = -np.mean(np.log([0.9, 0.4, 0.4, 0.8, 0.9, 0.8]))
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_regression_metrics_by_hand():
    y = np.array([3.0, -1.0, 2.0, 7.0])
    pred = np.array([2.5, 0.0, 2.0, 8.0])
    m = evaluation.regression_metrics(y, pred)
    errors = np.array([0.5, -1.0, 0.0, -1.0])
    assert m["mae"] == pytest.approx(2.5 / 4)
    assert m["rmse"] == pytest.approx(np.sqrt(2.25 / 4))
    ss_tot = np.sum((y - y.mean()) ** 2)  # mean 2.75: 0.0625 + 14.0625 + 0.5625 + 18.0625
    assert m["r2"] == pytest.approx(1 - 2.25 / ss_tot)
    assert m["explained_variance"] == pytest.approx(1 - np.var(errors) / np.var(y))
    assert m["mape"] == pytest.approx(100 * (0.5 / 3 + 1 / 1 + 0 + 1 / 7) / 4)


def test_anomaly_metrics_and_best_f1_threshold():
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.6, 0.9])
    cut = evaluation.best_f1_threshold(y, scores)
    assert cut == pytest.approx(0.6)  # flags 0.6, 0.7, 0.9: P 2/3, R 1, F1 0.8 (best)
    m = evaluation.anomaly_metrics(y, scores, (scores >= cut).astype(int))
    assert m["f1"] == pytest.approx(0.8)
    assert m["anomaly_rate"] == pytest.approx(0.6)
    assert m["roc_auc"] == pytest.approx(5 / 6)


def test_predict_classes_threshold_and_argmax():
    proba = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert predict_classes(proba, 0.25).tolist() == [1, 1]
    assert predict_classes(proba, None).tolist() == [0, 1]
    assert predict_classes(np.array([[0.2, 0.5, 0.3]]), 0.9).tolist() == [1]


def test_grid_of_search_space():
    space = {
        "depth": SearchParam(type="int", low=2, high=6, step=2),
        "lr": SearchParam(type="float", low=0.1, high=0.3, step=0.1),
        "kind": SearchParam(type="categorical", choices=["a", "b"]),
    }
    grid = grid_of(space)
    assert grid["depth"] == [2, 4, 6]
    assert grid["lr"] == pytest.approx([0.1, 0.2, 0.3])
    assert grid["kind"] == ["a", "b"]
    with pytest.raises(ConfigError, match="lr: grid search needs 'step'"):
        grid_of({"lr": SearchParam(type="float", low=0.1, high=0.3)})


def _bundle():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = pd.DataFrame({"t": [1.0, 2.0, 3.0, 4.0], "kind": ["L", "M", "L", "M"]})
    encode = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder())
    pre = ColumnTransformer([("n", "passthrough", ["t"]), ("c", encode, ["kind"])])
    pipe = Pipeline([("preprocess", pre), ("model", LogisticRegression())]).fit(X, [0, 0, 1, 1])
    meta = {
        "task": "classification",
        "numeric": ["t"],
        "categorical": ["kind"],
        "categories": {"kind": ["L", "M"]},
        "classes": [0, 1],
        "threshold": 0.5,
    }
    return TabularBundle(pipe, meta)


def test_bundle_predicts_with_probabilities(tmp_path):
    bundle = TabularBundle.load(_bundle().save(tmp_path / "b"))
    out = bundle.predict(pd.DataFrame({"t": [1.0, 4.0], "kind": ["L", "M"]}))
    assert list(out.columns) == ["prediction", "prediction_proba", "proba_0", "proba_1"]
    assert out["prediction"].tolist() == [0, 1]
    # a missing category (None from JSON) is missing, not a category of its own
    same = bundle.predict(pd.DataFrame({"t": [1.0], "kind": [None]}))
    nan = bundle.predict(pd.DataFrame({"t": [1.0], "kind": [np.nan]}))
    assert same["proba_1"].tolist() == nan["proba_1"].tolist()
    np.testing.assert_allclose(out["proba_0"] + out["proba_1"], 1.0)


@pytest.mark.parametrize(
    ("frame", "field", "message"),
    [
        ({"t": [1.0]}, "kind", "missing"),
        ({"t": [1.0], "kind": ["L"], "x": [0]}, "x", "unknown feature"),
        ({"t": [1.0, "hot"], "kind": ["L", "L"]}, "t", "not a number at row 1 ('hot')"),
        ({"t": [1.0], "kind": ["Z"]}, "kind", "unseen categor(ies) at row 0 ('Z')"),
    ],
)
def test_bundle_rejects_bad_records_naming_the_feature(frame, field, message):
    with pytest.raises(TabularInputError) as err:
        _bundle().predict(pd.DataFrame(frame))
    assert err.value.field == field and message in str(err.value)
