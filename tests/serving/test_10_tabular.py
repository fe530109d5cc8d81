"""A registered tabular classifier (two versions trained by the real tabular pipeline on an
AI4I 2020 slice) served by a real local stack: V1 feature records, V2 tensors by feature
name, ``/predict`` with ``prediction_proba``, the sticky split, the prediction log, metrics
and bad input refused by name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.serving.conftest import (
    REPO,
    TABULAR_ENDPOINT,
    TABULAR_FEATURES,
    TABULAR_REGISTERED,
    Stack,
    start_stack,
    wait_for,
)

ENDPOINT, REGISTERED, FEATURES = TABULAR_ENDPOINT, TABULAR_REGISTERED, TABULAR_FEATURES


@pytest.fixture(scope="module")
def tabular_stack(tabular_home: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("logs") / "tabular-stack.log"
    running = start_stack(tabular_home, 50, log, ("--endpoint", ENDPOINT))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def tc(tabular_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    """100 real AI4I records from outside the training rows: 20 failures, 80 not."""
    frame = pd.read_csv(REPO / "data" / "ai4i2020.csv", encoding="utf-8-sig").iloc[2000:6000]
    failed = frame["Machine failure"] == 1
    mixed = pd.concat([frame[~failed].head(80), frame[failed].head(20)]).sort_index()
    return mixed[FEATURES].to_dict("records")


def expected(home: Path, version: str, records: list[dict[str, Any]]) -> pd.DataFrame:
    """What the registered version predicts, loaded in this process from the registry."""
    from pipelines.settings import Settings
    from serving.served_model import load_from_registry

    served = load_from_registry(Settings.resolve(home).mlflow_tracking_uri, REGISTERED, version)
    return served.bundle.predict(pd.DataFrame(records))


def test_v1_records_get_the_registered_versions_predictions(tabular_stack, tc, records):
    url = f"{tabular_stack.router}/v1/models/{ENDPOINT}:predict"
    for version in ("1", "2"):
        r = tc.post(url, json={"instances": records, "model_version": version})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model_version"], body["task"]) == (version, "classification")
        want = expected(tabular_stack.home, version, records)
        got = pd.DataFrame(body["predictions"])
        assert list(got.columns) == ["prediction", "prediction_proba"]
        assert got["prediction"].tolist() == want["prediction"].tolist()
        assert got["prediction_proba"].tolist() == pytest.approx(
            want["prediction_proba"].tolist(), abs=1e-12)
        assert set(got["prediction"]) == {0, 1}  # the slice holds failures the model finds
    assert body["variant"] in ("champion", "challenger")


def test_v2_tensors_by_feature_name(tabular_stack, tc, records):
    frame = pd.DataFrame(records)
    inputs = [{"name": c, "shape": [len(frame)],
               "datatype": "BYTES" if c == "Type" else "FP64", "data": frame[c].tolist()}
              for c in FEATURES]
    r = tc.post(f"{tabular_stack.router}/v2/models/{ENDPOINT}/infer",
                json={"inputs": inputs, "parameters": {"model_version": "1"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == ENDPOINT and body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert set(outputs) == {"prediction", "prediction_proba"}
    want = expected(tabular_stack.home, "1", records)
    assert outputs["prediction"]["datatype"] == "INT64"
    assert outputs["prediction"]["shape"] == [len(records)]
    assert outputs["prediction"]["data"] == want["prediction"].tolist()
    assert outputs["prediction_proba"]["data"] == pytest.approx(
        want["prediction_proba"].tolist(), abs=1e-12)
    meta = tc.get(f"{tabular_stack.router}/v2/models/{ENDPOINT}").json()
    assert sorted(i["name"] for i in meta["inputs"]) == sorted(FEATURES)
    assert meta["parameters"]["champion"]["task"] == "classification"


def test_predict_with_user_id_is_sticky_and_splits(tabular_stack, tc, records):
    url = f"{tabular_stack.router}/predict"
    seen = {}
    for i in range(40):
        user = f"user-{i}"
        answers = [tc.post(url, json={"features": records[i], "user_id": user}).json()
                   for _ in range(2)]
        assert answers[0]["variant"] == answers[1]["variant"]  # sticky by user_id
        a = answers[0]
        assert a["prediction"] in (0, 1) and 0.0 <= a["prediction_proba"] <= 1.0
        assert {"model_version", "request_id", "execution_time_ms"} <= set(a)
        seen[a["variant"]] = a["model_version"]
    assert seen == {"champion": "1", "challenger": "2"}  # 50 % split: both serve
    metrics = tc.get(f"{tabular_stack.router}/metrics").text
    assert f'model="{ENDPOINT}"' in metrics


def _log_rows(home: Path) -> list[Any]:
    from sqlalchemy import select

    from serving.prediction_log.schema import engine_for, prediction_requests

    with engine_for(f"sqlite:///{home / 'prediction_log.db'}").connect() as conn:
        return conn.execute(select(prediction_requests)).all()


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"Pressure": 1.0}, "Pressure", "unknown feature"),
    ({"Torque": None, "drop": "Torque"}, "Torque", "missing"),
    ({"Torque": "high"}, "Torque", "not a number"),
    ({"Torque": [1.0]}, "Torque", "must be a number, a string or null"),
    ({"Type": "X"}, "Type", "unseen categor"),
])
def test_bad_features_are_refused_by_name_and_not_logged(tabular_stack, tc, records, change,
                                                         field, words):
    record = dict(records[0])
    record.update({k: v for k, v in change.items() if k != "drop"})
    record.pop(change.get("drop", ""), None)
    bad_ids = [f"bad-{uuid.uuid4().hex}" for _ in range(2)]
    for path, body, request_id in (
        (f"/v1/models/{ENDPOINT}:predict", {"instances": [records[1], record]}, bad_ids[0]),
        ("/predict", {"features": record, "user_id": "u"}, bad_ids[1]),
    ):
        r = tc.post(f"{tabular_stack.router}{path}", json=body,
                    headers={"x-request-id": request_id})
        assert r.status_code == 400, r.text
        assert field in r.json()["field"] and words in r.json()["error"], r.text
    ok = tc.post(f"{tabular_stack.router}/predict", json={"features": records[0]}).json()
    rows = wait_for(lambda: [row for row in _log_rows(tabular_stack.home)
                             if row.request_id == ok["request_id"]], what="the logged request")
    assert not [row for row in _log_rows(tabular_stack.home) if row.request_id in bad_ids]
    payload = rows[0].payload
    assert payload["features"]["Torque"] == [records[0]["Torque"]]
    assert payload["prediction_proba"] == [ok["prediction_proba"]]
    assert (rows[0].model_name, rows[0].model_version, rows[0].windows) == (
        REGISTERED, ok["model_version"], 1)


def test_labels_fed_back_by_record_join_the_logged_records(tabular_stack, tc, records):
    from datetime import datetime

    from serving.prediction_log.reader import tabular_records
    from serving.prediction_log.schema import engine_for

    r = tc.post(f"{tabular_stack.router}/v1/models/{ENDPOINT}:predict",
                json={"instances": records[:5]})
    assert r.status_code == 200, r.text
    request_id = r.json()["request_id"]
    feedback = f"{tabular_stack.control}/feedback"
    for body, words in (
        ({"request_id": request_id, "actuals": [{"record": 0, "y": 1},
                                                {"ds": "2020-01-01T00:00", "y": 1}]},
         "separate feedback bodies"),
        ({"series_id": "x", "actuals": [{"record": 0, "y": 1}]}, "record needs the request_id"),
        ({"request_id": request_id, "actuals": [{"y": 1}]}, "actuals[0]: give ds"),
        ({"request_id": request_id, "actuals": [{"record": -1, "y": 1}]}, "greater than or equal"),
    ):
        bad = tc.post(feedback, json=body, headers=tabular_stack.auth())
        assert bad.status_code == 422 and words in bad.text, bad.text
    labels = [1, 0, 0, 1, 0]
    ok = tc.post(feedback, headers=tabular_stack.auth(), json={
        "request_id": request_id, "actuals": [{"record": i, "y": y} for i, y in
                                              enumerate(labels)]})
    assert ok.status_code == 201 and ok.json() == {"stored": 5}, ok.text
    engine = engine_for(f"sqlite:///{tabular_stack.home / 'prediction_log.db'}")

    def logged() -> list[pd.DataFrame]:
        frame = tabular_records(engine, datetime(2000, 1, 1), model_name=REGISTERED)
        mine = frame[frame["request_id"] == request_id] if len(frame) else frame
        return [mine] if len(mine) == 5 else []

    [mine] = wait_for(logged, what="the labelled request in the log")
    assert mine["record"].tolist() == [0, 1, 2, 3, 4]
    assert mine["label"].tolist() == labels  # only the bad bodies' rows were not stored
    assert mine["Torque"].tolist() == [rec["Torque"] for rec in records[:5]]
