"""The tabular fast path (serving.tabular_fast) gives the model exactly the pipeline's matrix
for every preprocessing the config offers, on real AI4I rows with missing values, and leaves
what it cannot take (numbers as text, unseen or non-text categories) to the pipeline's checks,
which name the feature and the record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.tabular.bundle import TabularBundle
from pipelines.tabular.config import load_tabular_config
from pipelines.tabular.data import read_table, validate_table
from pipelines.tabular.preprocess import fit_model
from serving.protocol import RequestError
from serving.tabular_fast import compile_bundle, verified
from serving.tabular_model import ServedTabular, TabularRequest

REPO = Path(__file__).resolve().parents[2]

VARIANTS = {
    "standard-onehot": {},
    "robust-ordinal-iqr": {"scaler": "robust", "encoding": "ordinal",
                           "outliers": {"method": "iqr", "threshold": 1.5, "action": "clip"}},
    "minmax-zscore-mean": {"scaler": "minmax", "numeric_imputation": "mean",
                           "outliers": {"method": "zscore", "threshold": 2.0, "action": "clip"}},
    "unscaled": {"scaler": "none"},
}


@pytest.fixture(scope="module")
def ai4i() -> tuple[object, pd.DataFrame, np.ndarray, list[str], list[str]]:
    cfg = load_tabular_config(REPO / "configs" / "ai4i_classification.yaml")
    data = cfg.model_dump(mode="json")
    data["data"]["rows"] = {"start": 0, "stop": 2000}
    cfg = type(cfg).model_validate(data)
    v = validate_table(read_table(cfg.data), cfg)
    frame = v.frame[v.numeric + v.categorical]
    return cfg, frame, v.frame[cfg.data.target_column].to_numpy(), v.numeric, v.categorical


def _bundle(ai4i, preprocess: dict, algorithm: str = "lightgbm",
            selection: str = "none") -> TabularBundle:
    cfg, frame, y, numeric, categorical = ai4i
    data = cfg.model_dump(mode="json")
    data["preprocess"] = {**data["preprocess"], **preprocess}
    data["feature_selection"] = {"method": selection, "n_features": 4}
    cfg = type(cfg).model_validate(data)
    params = {"n_estimators": 30} if algorithm == "lightgbm" else {}
    fitted = fit_model(algorithm, params, frame.iloc[:1500], y[:1500], numeric, categorical, cfg)
    meta = {"task": "classification", "algorithm": algorithm, "numeric": numeric,
            "categorical": categorical,
            "categories": {c: sorted(frame[c].dropna().unique().tolist()) for c in categorical},
            "classes": [0, 1], "threshold": 0.3}
    return TabularBundle(fitted.pipeline, meta)


def _requests(ai4i) -> pd.DataFrame:
    """Held-out rows as a request sends them, some values missing (null)."""
    frame = ai4i[1].iloc[1500:].reset_index(drop=True).astype(object)
    frame.iloc[::7, 1] = None
    frame.iloc[::11, frame.columns.get_loc("Type")] = None
    return frame


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fast_matrix_is_the_pipelines(ai4i, variant: str) -> None:
    bundle = _bundle(ai4i, VARIANTS[variant])
    fast = verified(bundle, _requests(ai4i).head(3))
    assert fast is not None
    requests = _requests(ai4i)
    typed = requests.copy()
    for column in bundle.meta["numeric"]:
        typed[column] = typed[column].astype("float64")
    expected = bundle.pipeline.named_steps["preprocess"].transform(bundle.check(requests))
    got = fast.matrix(typed)
    assert got is not None and np.array_equal(got, expected)
    pd.testing.assert_frame_equal(bundle.predict(typed, fast.matrix), bundle.predict(requests))


@pytest.mark.parametrize("algorithm,selection", [("logistic_regression", "statistical"),
                                                 ("random_forest", "tree_importance")])
def test_selection_and_other_models(ai4i, algorithm: str, selection: str) -> None:
    bundle = _bundle(ai4i, {}, algorithm, selection)
    fast = compile_bundle(bundle)
    assert fast is not None and fast.support is not None and fast.support.sum() == 4
    requests = _requests(ai4i)
    typed = requests.astype({c: "float64" for c in bundle.meta["numeric"]})
    pd.testing.assert_frame_equal(bundle.predict(typed, fast.matrix), bundle.predict(requests))


def test_what_it_does_not_take_goes_to_the_checks(ai4i) -> None:
    bundle = _bundle(ai4i, {})
    fast = compile_bundle(bundle)
    served = ServedTabular(bundle, "m", "1", "/nonexistent", "models:/m/1", fast)
    good = ai4i[1].iloc[[1600, 1601]].reset_index(drop=True)

    as_text = good.astype({"Torque": object})
    as_text.loc[0, "Torque"] = "41.5"  # the pipeline's checks parse numeric text
    assert fast.matrix(as_text) is None
    assert served.predict(TabularRequest(as_text, None, None, "instances"))["prediction"].size == 2

    unseen = good.copy()
    unseen.loc[1, "Type"] = "X"
    assert fast.matrix(unseen) is None
    with pytest.raises(RequestError, match="unseen categor") as err:
        served.predict(TabularRequest(unseen, None, None, "instances"))
    assert err.value.field == "instances.Type"

    extra = good.assign(Pressure=1.0)
    assert fast.matrix(extra) is None and fast.matrix(good.drop(columns="Torque")) is None
    with pytest.raises(RequestError, match="unknown feature") as err:
        served.predict(TabularRequest(extra, None, None, "instances"))
    assert err.value.field == "instances.Pressure"

    word = good.astype({"Torque": object})
    word.loc[1, "Torque"] = "heavy"
    with pytest.raises(RequestError, match="not a number") as err:
        served.predict(TabularRequest(word, None, None, "instances"))
    assert err.value.field == "instances.Torque"
