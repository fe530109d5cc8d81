"""Tabular validation names column and row; cleaning, selection and split behave as set."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.data.validate import DataValidationError
from pipelines.tabular.config import load_tabular_config
from pipelines.tabular.data import read_table, split_parts, validate_table
from pipelines.tabular.preprocess import OutlierClipper, clean_training_rows, fit_model

REPO = Path(__file__).resolve().parents[2]
AI4I = REPO / "data" / "ai4i2020.csv"


def _cfg(tmp_path, csv: Path, **changes):
    data = yaml.safe_load((REPO / "configs" / "ai4i_classification.yaml").read_text())
    data["data"]["source"]["path"] = str(csv)
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_tabular_config(path)


def _edited(tmp_path, edit, rows=400) -> Path:
    frame = pd.read_csv(AI4I, encoding="utf-8-sig", nrows=rows)
    edit(frame)
    path = tmp_path / "edited.csv"
    frame.to_csv(path, index=False)
    return path


def test_ai4i_validates_and_drops_the_leaks(tmp_path):
    cfg = _cfg(tmp_path, AI4I)
    v = validate_table(read_table(cfg.data), cfg)
    assert len(v.frame) == 10_000
    assert v.categorical == ["Type"]
    assert set(v.dropped) == {"TWF", "HDF", "PWF", "OSF", "RNF"}
    assert not {"UDI", "Product ID", *v.dropped} & set(v.frame.columns)
    assert v.frame["Machine failure"].sum() == 339


def test_missing_target_and_wrong_type_named_with_rows(tmp_path):
    def edit(f):
        f["Machine failure"] = f["Machine failure"].astype(object)
        f.loc[[4, 9], "Machine failure"] = None  # data rows 5 and 10
        f["Torque"] = f["Torque"].astype(object)
        f.loc[6, "Torque"] = "high"  # data row 7

    cfg = _cfg(tmp_path, _edited(tmp_path, edit))
    with pytest.raises(DataValidationError) as err:
        validate_table(read_table(cfg.data), cfg)
    msg = str(err.value)
    assert "column 'Machine failure' (target): 2 missing label(s) at row 5, row 10" in msg
    assert "column 'Torque' (numeric feature): 1 non-numeric value(s) at row 7 ('high')" in msg


def test_constant_and_empty_columns_dropped_and_reported(tmp_path):
    def edit(f):
        f["Site"] = "A"
        f["Note"] = np.nan

    cfg = _cfg(tmp_path, _edited(tmp_path, edit))
    v = validate_table(read_table(cfg.data), cfg)
    assert v.dropped["Site"] == "constant ('A')"
    assert v.dropped["Note"] == "all values missing"
    assert "Site" not in v.frame and "Note" not in v.frame


def test_unknown_column_named(tmp_path):
    cfg = _cfg(tmp_path, AI4I, data={"leakage_columns": ["TWF", "XYZ"]})
    with pytest.raises(DataValidationError, match="'XYZ' \\(leakage_columns\\) not found"):
        validate_table(read_table(cfg.data), cfg)


def test_stratified_split_keeps_the_failure_rate(tmp_path):
    cfg = _cfg(tmp_path, AI4I)
    v = validate_table(read_table(cfg.data), cfg)
    parts = split_parts(v.frame, cfg)
    y = v.frame["Machine failure"].to_numpy()
    assert [(parts == p).sum() for p in ("train", "val", "test")] == [6000, 2000, 2000]
    for p in ("train", "val", "test"):
        assert abs(y[parts == p].mean() - 0.0339) < 0.001


def test_outlier_clipper_iqr_bounds_by_hand():
    X = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    clip = OutlierClipper("iqr", 1.5).fit(X)
    # q1 = 2, q3 = 4, IQR = 2: bounds -1 .. 7
    assert clip.lower_[0] == -1.0 and clip.upper_[0] == 7.0
    assert clip.transform([[100.0], [-5.0]]).ravel().tolist() == [7.0, -1.0]


def test_row_cleaning_drop_ffill_and_zscore(tmp_path):
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 1.0, 2.0], "c": ["x", None, "y", "x", "y"]})
    cfg = _cfg(tmp_path, AI4I, preprocess={"numeric_imputation": "ffill"})
    out = clean_training_rows(frame, ["a"], ["c"], cfg)
    assert out["a"].tolist() == [1.0, 1.0, 3.0, 1.0, 2.0] and out["c"].isna().sum() == 1
    cfg = _cfg(tmp_path, AI4I, preprocess={"categorical_imputation": "drop"})
    assert len(clean_training_rows(frame, ["a"], ["c"], cfg)) == 4


@pytest.mark.parametrize(
    "method", ["correlation", "mutual_info", "rfe", "tree_importance", "statistical"]
)
def test_feature_selection_keeps_n_features(tmp_path, method):
    cfg = _cfg(
        tmp_path,
        AI4I,
        feature_selection={"method": method, "n_features": 3},
        data={"rows": {"start": 0, "stop": 1500}},
    )
    v = validate_table(read_table(cfg.data), cfg)
    X, y = v.frame[v.numeric + v.categorical], v.frame["Machine failure"].to_numpy()
    fitted = fit_model("logistic_regression", {}, X, y, v.numeric, v.categorical, cfg)
    names = fitted.pipeline.named_steps["preprocess"].get_feature_names_out()
    assert len(names) == 3
    assert fitted.pipeline.predict_proba(X[:5]).shape == (5, 2)


@pytest.mark.parametrize("method", ["oversample", "undersample", "smote"])
def test_resampling_balances_training_rows_only(tmp_path, method):
    cfg = _cfg(
        tmp_path, AI4I, imbalance={"method": method}, data={"rows": {"start": 0, "stop": 1500}}
    )
    v = validate_table(read_table(cfg.data), cfg)
    X, y = v.frame[v.numeric + v.categorical], v.frame["Machine failure"].to_numpy()
    fitted = fit_model("decision_tree", {"max_depth": 3}, X, y, v.numeric, v.categorical, cfg)
    positives = int(y.sum())
    expected = 2 * positives if method == "undersample" else 2 * int((y == 0).sum())
    assert fitted.train_rows == expected


@pytest.mark.parametrize("kind", ["parquet", "excel", "sql"])
def test_parquet_excel_and_sql_sources_read_like_csv(tmp_path, kind):
    frame = pd.read_csv(AI4I, encoding="utf-8-sig", nrows=300)
    if kind == "parquet":
        frame.to_parquet(tmp_path / "ai4i.parquet")
        source = {"kind": "parquet", "path": str(tmp_path / "ai4i.parquet")}
    elif kind == "excel":
        frame.to_excel(tmp_path / "ai4i.xlsx", sheet_name="records", index=False)
        source = {"kind": "excel", "path": str(tmp_path / "ai4i.xlsx"), "sheet": "records"}
    else:
        import sqlite3

        with sqlite3.connect(tmp_path / "ai4i.db") as conn:
            frame.to_sql("records", conn, index=False)
        source = {
            "kind": "sql",
            "url": f"sqlite:///{tmp_path / 'ai4i.db'}",
            "query": 'SELECT * FROM records ORDER BY "UDI"',
        }
    csv_cfg = _cfg(tmp_path, AI4I, data={"rows": {"start": 0, "stop": 300}})
    expected = validate_table(read_table(csv_cfg.data), csv_cfg).frame
    data = csv_cfg.model_dump(mode="json")["data"] | {"source": source}
    cfg = type(csv_cfg).model_validate(csv_cfg.model_dump(mode="json") | {"data": data})
    got = validate_table(read_table(cfg.data), cfg).frame
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.parametrize(
    ("scaler", "expected"),
    [
        ("standard", [-1.2247449, 0.0, 1.2247449]),  # (x - 2) / sqrt(2/3)
        ("minmax", [0.0, 0.5, 1.0]),
        ("robust", [-1.0, 0.0, 1.0]),  # (x - median 2) / IQR (2.5 - 1.5)
        ("none", [1.0, 2.0, 3.0]),
    ],
)
def test_scalers_by_hand(tmp_path, scaler, expected):
    from pipelines.tabular.preprocess import build_columns

    cfg = _cfg(tmp_path, AI4I, preprocess={"scaler": scaler})
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"]})
    out = build_columns(["a"], ["c"], cfg).fit_transform(X)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6)


def test_mean_imputation_and_encodings(tmp_path):
    from pipelines.tabular.preprocess import build_columns

    X = pd.DataFrame({"a": [1.0, np.nan, 5.0], "c": ["x", "y", np.nan]})
    cfg = _cfg(
        tmp_path,
        AI4I,
        preprocess={"scaler": "none", "numeric_imputation": "mean", "encoding": "onehot"},
    )
    columns = build_columns(["a"], ["c"], cfg).fit(X)
    out = columns.transform(pd.DataFrame({"a": [np.nan], "c": ["z"]}))
    assert out.tolist() == [[3.0, 0.0, 0.0]]  # mean 3; unseen category: all zeros
    assert list(columns.get_feature_names_out()) == ["a", "c_x", "c_y"]
    cfg = _cfg(tmp_path, AI4I, preprocess={"scaler": "none", "encoding": "ordinal"})
    columns = build_columns(["a"], ["c"], cfg).fit(X)
    # median 3; the missing category takes the most frequent ('x', first of the ties)
    assert columns.transform(X).tolist() == [[1.0, 0.0], [3.0, 1.0], [5.0, 0.0]]
    assert columns.transform(pd.DataFrame({"a": [1.0], "c": ["z"]})).tolist() == [[1.0, -1.0]]
