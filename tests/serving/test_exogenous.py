"""A model trained with regressors by the real pipeline (ETTh1: two load columns historical,
MUFL declared future as a planned load, hour of day as a calendar term) served by the real local
stack: V1, V2 and ``/predict`` carry the regressors by column name, the future values change the
forecast, and a request without them (or with short or non-numeric ones) gets a 400 naming
the series and the column, never a 500."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import ENDPOINT, REPO, TIDEMILL, Stack, start_stack

HISTORY, HORIZON = 48, 12


@pytest.fixture(scope="module")
def exog_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("exog-home")
    config = {
        "name": "serving-exog",
        "data": {
            "source": {"kind": "csv", "path": str(REPO / "data" / "ETTh1.csv")},
            "time_column": "date", "target_column": "OT", "series_id": "ETTh1", "freq": "h",
            "rows": {"start": 0, "stop": 2400},
            "exogenous": {"historical": ["HUFL", "LULL"], "future": ["MUFL"],
                          "calendar": ["hour_of_day"]},
        },
        "split": {"val_size": 400, "test_size": 300},
        "horizon": HORIZON,
        "algorithms": {"nlinear": {"params": {"lookback": HISTORY, "alpha": 1.0,
                                              "exog_lags": 12}}},
        "tuning": {"n_trials": 1},
        "mlflow": {"experiment": "serving-exog", "registered_model_name": "serving-exog"},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TIDEMILL_"))}
    subprocess.run([str(TIDEMILL), "train", "--config", str(root / "config.yaml"), "--home",
                    str(root / "home")], cwd=root, env=env, check=True, capture_output=True,
                   timeout=300)
    data = pd.read_csv(REPO / "data" / "ETTh1.csv", nrows=2400)
    stack = start_stack(root / "home", 0, root / "stack.log")
    try:
        yield stack, data
    finally:
        stack.stop()


def _instance(data: pd.DataFrame, end: int = 2300) -> dict:
    past = data.iloc[end - HISTORY:end]
    ahead = data.iloc[end:end + HORIZON]
    return {"timestamps": past["date"].str.replace(" ", "T").tolist(),
            "values": past["OT"].tolist(),
            "exog": {c: past[c].tolist() for c in ("HUFL", "LULL")},
            "future_exog": {"MUFL": ahead["MUFL"].tolist()}}


def _v1(stack: Stack, *instances: dict) -> httpx.Response:
    return httpx.post(f"{stack.router}/v1/models/{ENDPOINT}:predict",
                      json={"instances": list(instances)}, timeout=60)


def test_regressors_by_name_in_v1_v2_and_predict(exog_stack) -> None:
    stack, data = exog_stack
    inst = _instance(data)
    v1 = _v1(stack, inst)
    assert v1.status_code == 200, v1.text
    mean = v1.json()["predictions"][0]["mean"]
    assert len(mean) == HORIZON
    assert abs(sum(mean) / HORIZON - data["OT"].iloc[2300:2312].mean()) < 5

    # other planned loads, other forecast: the future regressor reaches the model
    shifted = {**inst, "future_exog": {"MUFL": [v + 3.0 for v in inst["future_exog"]["MUFL"]]}}
    assert _v1(stack, shifted).json()["predictions"][0]["mean"] != mean

    v2_body = {"inputs": [
        {"name": "values", "datatype": "FP64", "shape": [1, HISTORY], "data": inst["values"]},
        {"name": "timestamps", "datatype": "BYTES", "shape": [1, HISTORY],
         "data": inst["timestamps"]},
        *({"name": f"exog.{c}", "datatype": "FP64", "shape": [1, HISTORY], "data": v}
          for c, v in inst["exog"].items()),
        {"name": "future_exog.MUFL", "datatype": "FP64", "shape": [1, HORIZON],
         "data": inst["future_exog"]["MUFL"]},
    ]}
    v2 = httpx.post(f"{stack.router}/v2/models/{ENDPOINT}/infer", json=v2_body, timeout=60)
    assert v2.status_code == 200, v2.text
    forecast = next(o for o in v2.json()["outputs"] if o["name"] == "forecast")
    assert forecast["data"] == pytest.approx(mean)

    spec_body = {"data": [[t, v] for t, v in zip(inst["timestamps"], inst["values"],
                                                  strict=True)],
                 "exog": inst["exog"], "future_exog": inst["future_exog"]}
    spec = httpx.post(f"{stack.router}/predict", json=spec_body, timeout=60)
    assert spec.status_code == 200, spec.text
    assert spec.json()["predictions"] == pytest.approx(mean)

    # without future values: 400 naming series and column, in each protocol
    v2_body["inputs"] = v2_body["inputs"][:-1]
    missing_v2 = httpx.post(f"{stack.router}/v2/models/{ENDPOINT}/infer", json=v2_body,
                            timeout=60)
    assert missing_v2.status_code == 400, missing_v2.text
    assert "series 'ETTh1'" in missing_v2.text and "'MUFL' is missing" in missing_v2.text
    del spec_body["future_exog"]
    missing_spec = httpx.post(f"{stack.router}/predict", json=spec_body, timeout=60)
    assert missing_spec.status_code == 400, missing_spec.text
    assert missing_spec.json()["field"] == "future_exog.MUFL"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda i: i.pop("future_exog"), "instances[1].future_exog.MUFL",
         "series 'ETTh1': regressor 'MUFL' is missing"),
        (lambda i: i["future_exog"].update(MUFL=i["future_exog"]["MUFL"][:5]),
         "instances[1].future_exog.MUFL", "has 5 values; at least 12 values"),
        (lambda i: i["future_exog"]["MUFL"].__setitem__(3, "high"),
         "instances[1].future_exog.MUFL", "must be a list of numbers"),
        (lambda i: i["future_exog"]["MUFL"].__setitem__(3, None),
         "instances[1].future_exog.MUFL[3]", "is NaN, inf or missing"),
        (lambda i: i["exog"].pop("LULL"), "instances[1].exog.LULL",
         "regressor 'LULL' is missing: 48 values, one per history value"),
    ],
    ids=["future missing", "future short", "future non-numeric", "future null", "hist missing"],
)
def test_missing_or_bad_regressors_are_a_400_naming_series_and_column(
    exog_stack, change, field, words
) -> None:
    stack, data = exog_stack
    bad = _instance(data, 2200)
    change(bad)
    answer = _v1(stack, _instance(data), bad)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["error"]


def test_the_example_request_carries_the_regressors(exog_stack) -> None:
    stack, _ = exog_stack
    example = httpx.get(f"{stack.router}/v1/models/{ENDPOINT}/example", timeout=30).json()
    instance = example["instances"][0]
    assert set(instance["exog"]) == {"HUFL", "LULL"}
    assert len(instance["future_exog"]["MUFL"]) == HORIZON
    answer = httpx.post(f"{stack.router}/v1/models/{ENDPOINT}:predict", json=example, timeout=60)
    assert answer.status_code == 200, answer.text
    meta = httpx.get(f"{stack.router}/v2/models/{ENDPOINT}", timeout=30).json()
    assert meta["parameters"]["champion"]["exogenous"]["future"] == ["MUFL"]


def test_a_panel_model_names_the_series_whose_future_values_are_missing(tmp_path) -> None:
    """Two series (ETTh1's first and second 1,200 hours) and a future regressor: a batch where
    the second series' window lacks it is a 400 naming that series, in process."""
    from pipelines import panel
    from pipelines.bundle import ForecastBundle
    from pipelines.config import PreprocessConfig
    from pipelines.exogenous import ExogSpec, future_matrix
    from pipelines.preprocess import Preprocessor
    from serving.config import Limits
    from serving.protocol import RequestError, parse_v1
    from serving.served_model import load_from_dir

    raw = pd.read_csv(REPO / "data" / "ETTh1.csv", nrows=2400)
    frame = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 1200),
                          "ds": pd.to_datetime(raw["date"]), "y": raw["OT"],
                          "MUFL": raw["MUFL"]})
    train = frame.groupby("unique_id").head(1000)
    pre = Preprocessor(PreprocessConfig()).fit(train)
    scaled = pre.transform(train)
    spec = ExogSpec(future=("MUFL",))
    parts = [scaled[scaled["unique_id"] == u] for u in ("a", "b")]
    model = panel.fit("nlinear", HORIZON, {"lookback": HISTORY},
                      [p["y"].to_numpy() for p in parts], [p["ds"].to_numpy() for p in parts],
                      ["a", "b"], None,
                      [future_matrix(spec, p[["MUFL"]].to_numpy(), p["ds"].to_numpy())
                       for p in parts])
    model.interval_halfwidth = np.full(HORIZON, 0.1)
    ForecastBundle(pre, model, {"exogenous": spec.to_dict()}).save(tmp_path / "bundle")
    served = load_from_dir(tmp_path / "bundle", "panel-exog", "1")
    served.self_test()

    def instance(uid: str, future: bool) -> dict:
        rows = frame[frame["unique_id"] == uid].iloc[1000:1000 + HISTORY + HORIZON]
        inst = {"series_id": uid, "values": rows["y"].iloc[:HISTORY].tolist(),
                "timestamps": rows["ds"].iloc[:HISTORY].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()}
        if future:
            inst["future_exog"] = {"MUFL": rows["MUFL"].iloc[HISTORY:].tolist()}
        return inst

    both = parse_v1({"instances": [instance("a", True), instance("b", True)]}, {}, Limits())
    _, yhat, _, _ = served.forecast(both)
    assert yhat.shape == (2, HORIZON) and np.isfinite(yhat).all()
    with pytest.raises(RequestError) as info:
        served.forecast(parse_v1({"instances": [instance("a", True), instance("b", False)]},
                                 {}, Limits()))
    assert info.value.status == 400 and info.value.field == "instances[1].future_exog.MUFL"
    assert "series 'b': regressor 'MUFL' is missing" in str(info.value)
