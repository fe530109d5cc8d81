"""Datasets and data operations through the real API server: profiles, versions written by
clean / select-features / split while the source stays as it was, bad input named and
writing nothing, and everything still there after a restart."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.platform_api.conftest import TOKEN, ApiServer, ai4i_slice, start_api

TARGET = "Machine failure"


def upload(http: httpx.Client, frame: pd.DataFrame, name: str, fmt: str = "csv",
           **form: str) -> httpx.Response:  # fmt: skip
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.to_csv(buffer, index=False)
    elif fmt == "xlsx":
        frame.to_excel(buffer, index=False)
    else:
        frame.to_parquet(buffer, index=False)
    files = {"file": (f"{name}.{fmt}", buffer.getvalue())}
    return http.post("/api/ml/datasets/upload", files=files, data={"name": name, **form})


@pytest.fixture(scope="module")
def ai4i(http: httpx.Client) -> dict:
    resp = upload(http, ai4i_slice(), "ai4i", target_column=TARGET)
    assert resp.status_code == 201, resp.text
    return resp.json()


def count(http: httpx.Client) -> int:
    return len(http.get("/api/ml/datasets").json()["datasets"])


def test_upload_profiles_the_dataset(http: httpx.Client, ai4i: dict) -> None:
    got = http.get(f"/api/ml/datasets/{ai4i['id']}").raise_for_status().json()
    frame = ai4i_slice()
    assert got["rows"] == len(frame) == 600
    assert got["columns"] == list(frame.columns)
    assert got["target_column"] == TARGET and got["version"] == 1
    assert got["dtypes"]["Torque"] == "float64" and got["dtypes"]["Type"] == "object"
    assert got["missing"]["Torque"] == 3 and got["missing"]["Type"] == 2
    assert got["stats"]["Torque"]["mean"] == pytest.approx(frame["Torque"].mean())
    assert got["stats"]["Tool wear"]["max"] == frame["Tool wear"].max()
    assert set(got["top_values"]["Type"]) == {"L", "M", "H"}
    listed = http.get("/api/ml/datasets", params={"name": "ai4i"}).json()["datasets"]
    assert [d["id"] for d in listed] == [ai4i["id"]]


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
def test_excel_and_parquet_uploads(http: httpx.Client, fmt: str) -> None:
    frame = ai4i_slice(60)
    got = upload(http, frame, f"small-{fmt}", fmt=fmt, target_column=TARGET)
    assert got.status_code == 201, got.text
    assert got.json()["rows"] == 60 and got.json()["columns"] == list(frame.columns)


def test_bad_uploads_are_named_and_write_nothing(http: httpx.Client, api: ApiServer,
                                                 ai4i: dict) -> None:  # fmt: skip
    before = count(http)
    files_before = sorted(p.name for p in (api.home / "datasets").rglob("*"))
    frame = ai4i_slice(60)
    wrong_target = upload(http, frame, "bad", target_column="failure")
    assert wrong_target.status_code == 422 and "'failure'" in wrong_target.json()["detail"]
    big = pd.DataFrame({"x": range(200_000), "y": range(200_000)})
    too_large = upload(http, big, "big")
    assert too_large.status_code == 413
    assert "1048576 bytes" in too_large.json()["detail"], too_large.text
    garbage = http.post("/api/ml/datasets/upload", data={"name": "junk"},
                        files={"file": ("junk.parquet", b"not a parquet file")})  # fmt: skip
    assert garbage.status_code == 422 and "junk.parquet" in garbage.json()["detail"]
    unknown = http.post("/api/ml/datasets/upload", data={"name": "junk"},
                        files={"file": ("junk.json", b"{}")})  # fmt: skip
    assert unknown.status_code == 415 and ".json" in unknown.json()["detail"]
    no_token = httpx.post(f"{api.url}/api/ml/datasets/upload", data={"name": "x"},
                          files={"file": ("x.csv", b"a,b\n1,2\n")})  # fmt: skip
    assert no_token.status_code == 401
    missing = http.get("/api/ml/datasets/nope")
    assert missing.status_code == 404 and "'nope'" in missing.json()["detail"]
    assert count(http) == before
    assert sorted(p.name for p in (api.home / "datasets").rglob("*")) == files_before


def test_operations_write_new_versions_and_leave_the_source(http: httpx.Client,
                                                            ai4i: dict) -> None:  # fmt: skip
    source_before = http.get(f"/api/ml/datasets/{ai4i['id']}").json()
    stored = pd.read_parquet(source_before["url"])

    cleaned = http.post("/api/ml/data/clean", json={
        "dataset_id": ai4i["id"], "drop_columns": ["UDI", "Product ID"],
        "outliers": {"method": "iqr", "threshold": 3.0, "action": "clip"},
    })  # fmt: skip
    assert cleaned.status_code == 201, cleaned.text
    clean = cleaned.json()
    assert clean["dataset"]["version"] == 2 and clean["dataset"]["parent_id"] == ai4i["id"]
    assert clean["summary"]["missing_before"] == 5 and clean["summary"]["missing_after"] == 0
    assert "UDI" not in clean["dataset"]["columns"]
    assert sum(clean["dataset"]["missing"].values()) == 0

    selected = http.post("/api/ml/data/select-features", json={
        "dataset_id": clean["id"], "task": "classification", "method": "statistical",
        "n_features": 3, "keep_columns": ["TWF"],
    })  # fmt: skip
    assert selected.status_code == 201, selected.text
    sel = selected.json()
    assert len(sel["summary"]["selected"]) == 3
    assert set(sel["dataset"]["columns"]) == {*sel["summary"]["selected"], TARGET, "TWF"}

    split = http.post("/api/ml/data/split", json={
        "dataset_id": sel["id"], "task": "classification", "val_size": 0.2, "test_size": 0.25,
    })  # fmt: skip
    assert split.status_code == 201, split.text
    parts = split.json()["summary"]["parts"]
    assert parts == {"train": 330, "val": 120, "test": 150}
    frame = pd.read_parquet(split.json()["dataset"]["url"])
    rates = frame.groupby("__split__")[TARGET].mean()
    assert rates.max() - rates.min() < 0.02  # stratified by the label

    assert http.get(f"/api/ml/datasets/{ai4i['id']}").json() == source_before
    pd.testing.assert_frame_equal(pd.read_parquet(source_before["url"]), stored)


def test_bad_operations_are_named_and_write_nothing(http: httpx.Client, ai4i: dict) -> None:
    before = count(http)
    cases = [
        ("/api/ml/data/clean", {"dataset_id": ai4i["id"], "drop_columns": ["nope"]}, "'nope'"),
        ("/api/ml/data/clean", {"dataset_id": "missing-id"}, "'missing-id'"),
        ("/api/ml/data/clean", {"dataset_id": ai4i["id"], "numeric_imputation": "zero"},
         "numeric_imputation"),
        ("/api/ml/data/split", {"dataset_id": ai4i["id"], "task": "regression",
                                "time_column": "when"}, "'when'"),
        ("/api/ml/data/split", {"dataset_id": ai4i["id"], "task": "classification",
                                "val_size": 0.5, "test_size": 0.45}, "val_size + test_size"),
        ("/api/ml/data/select-features", {"dataset_id": ai4i["id"], "task": "classification",
                                          "method": "statistical", "keep_columns": ["zzz"]},
         "'zzz'"),
    ]  # fmt: skip
    for path, body, named in cases:
        resp = http.post(path, json=body)
        assert 400 <= resp.status_code < 500, (path, body, resp.text)
        assert named in resp.text, (path, body, resp.text)
    assert count(http) == before


def test_openapi_declares_the_bearer_scheme(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    upload_op = spec["paths"]["/api/ml/datasets/upload"]["post"]
    assert upload_op["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/api/ml/datasets/{dataset_id}"]["get"]
    assert http.get("/docs").status_code == 200


def test_datasets_survive_a_restart(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "api.log"
    first = start_api(home, log)
    try:
        with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as http:  # fmt: skip
            made = upload(http, ai4i_slice(60), "kept", target_column=TARGET).json()
    finally:
        first.stop()
    second = start_api(home, log)
    try:
        got = httpx.get(f"{second.url}/api/ml/datasets/{made['id']}", timeout=30)
        assert got.status_code == 200 and got.json()["rows"] == 60
    finally:
        second.stop()
