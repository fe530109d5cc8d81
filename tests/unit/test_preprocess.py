"""Preprocessor: train-only statistics, imputation modes, exact inverse, JSON persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import CsvSource, DataConfig, PreprocessConfig, SplitConfig
from pipelines.data import load_raw, split_rows, validate
from pipelines.preprocess import Preprocessor

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"


@pytest.fixture(scope="module")
def etth1() -> pd.DataFrame:
    """The first 2000 hourly rows of ETTh1 with two exogenous columns."""
    cfg = DataConfig(
        source=CsvSource(path=ETTH1),
        time_column="date",
        target_column="OT",
        exog_columns=["HUFL", "LULL"],
        rows={"stop": 2000},
    )
    return validate(load_raw(cfg), cfg, min_rows=2000)


def gappy(values: list[float], series: str = "s") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": series,
            "ds": pd.date_range("2021-01-01", periods=len(values), freq="h"),
            "y": values,
        }
    )


GAPS = [np.nan, 2.0, np.nan, np.nan, 8.0, 6.0, np.nan]


@pytest.mark.parametrize("scaler", ["standard", "minmax", "none"])
def test_statistics_come_from_training_rows_only(etth1: pd.DataFrame, scaler: str) -> None:
    split = split_rows(len(etth1), SplitConfig(val_size=300, test_size=300))
    cfg = PreprocessConfig(scaler=scaler)
    fitted = Preprocessor(cfg).fit(etth1.iloc[split.train])

    tampered = etth1.copy()
    tampered.loc[split.val.start :, ["y", "HUFL"]] *= 1000.0
    refitted = Preprocessor(cfg).fit(tampered.iloc[split.train])
    assert refitted.series == fitted.series

    train_y = etth1["y"].to_numpy()[split.train]
    expected = {
        "standard": (train_y.mean(), train_y.std(ddof=0)),
        "minmax": (train_y.min(), train_y.max() - train_y.min()),
        "none": (0.0, 1.0),
    }[scaler]
    assert only(fitted)["y"]["center"] == pytest.approx(expected[0], rel=1e-12)
    assert only(fitted)["y"]["scale"] == pytest.approx(expected[1], rel=1e-12)
    scaled = fitted.transform(etth1)
    if scaler == "standard":
        assert scaled["y"].iloc[split.train].mean() == pytest.approx(0.0, abs=1e-9)
        assert scaled["y"].iloc[split.train].std(ddof=0) == pytest.approx(1.0, rel=1e-9)
    if scaler == "minmax":
        assert scaled["HUFL"].iloc[split.train].min() == pytest.approx(0.0, abs=1e-12)
        assert scaled["HUFL"].iloc[split.train].max() == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("scaler", ["standard", "minmax", "none"])
def test_transform_inverse_round_trip(etth1: pd.DataFrame, scaler: str) -> None:
    pre = Preprocessor(PreprocessConfig(scaler=scaler)).fit(etth1.iloc[:1500])
    scaled = pre.transform(etth1)
    assert list(scaled.columns) == list(etth1.columns)
    pd.testing.assert_series_equal(scaled["ds"], etth1["ds"])
    y = etth1["y"].to_numpy()
    np.testing.assert_allclose(pre.inverse_transform_target(scaled["y"].to_numpy()), y, atol=1e-12)
    np.testing.assert_array_equal(pre.transform_target(y), scaled["y"].to_numpy())
    windows = y[:1920].reshape(80, 24)  # any shape
    back = pre.inverse_transform_target(pre.transform_target(windows))
    assert back.shape == (80, 24)
    np.testing.assert_allclose(back, windows, atol=1e-12, rtol=0)


def test_constant_column_scales_by_one() -> None:
    pre = Preprocessor(PreprocessConfig(scaler="standard")).fit(gappy([3.0] * 5))
    assert only(pre)["y"] == {"mean": 3.0, "center": 3.0, "scale": 1.0}
    assert pre.transform(gappy([3.0, 4.0]))["y"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("imputation", "filled"),
    [
        ("ffill", [2.0, 2.0, 2.0, 2.0, 8.0, 6.0, 6.0]),
        ("linear", [2.0, 2.0, 4.0, 6.0, 8.0, 6.0, 6.0]),
        ("mean", [7.0, 2.0, 7.0, 7.0, 8.0, 6.0, 7.0]),
    ],
)
def test_imputation_modes(imputation: str, filled: list[float]) -> None:
    pre = Preprocessor(PreprocessConfig(imputation=imputation, scaler="none"))
    pre.fit(gappy([np.nan, 6.0, 8.0, np.nan]))  # training mean 7
    out = pre.transform(gappy(GAPS))
    assert out["y"].tolist() == filled
    assert gappy(GAPS)["y"].isna().sum() == 4  # the input is not modified


def test_imputation_stays_within_each_series() -> None:
    df = pd.concat([gappy([1.0, 2.0, 3.0], "a"), gappy([np.nan, 10.0, np.nan], "b")])
    for imputation in ("ffill", "linear"):
        pre = Preprocessor(PreprocessConfig(imputation=imputation, scaler="none")).fit(df)
        assert pre.transform(df)["y"].tolist() == [1.0, 2.0, 3.0, 10.0, 10.0, 10.0]


def test_no_imputation_with_missing_values_raises() -> None:
    pre = Preprocessor(PreprocessConfig(imputation="none")).fit(gappy(GAPS))
    assert pre.transform(gappy([1.0, 2.0]))["y"].notna().all()
    with pytest.raises(ValueError, match=r"missing values after imputation 'none' \('y': 4\)"):
        pre.transform(gappy(GAPS))


def test_series_without_any_value_cannot_be_imputed() -> None:
    pre = Preprocessor(PreprocessConfig(imputation="linear")).fit(gappy([1.0, 2.0]))
    with pytest.raises(ValueError, match="a series has no values"):
        pre.transform(gappy([np.nan, np.nan]))


def test_save_load_json_round_trip(tmp_path: Path, etth1: pd.DataFrame) -> None:
    cfg = PreprocessConfig(imputation="mean", scaler="minmax")
    pre = Preprocessor(cfg).fit(etth1.iloc[:1000])
    path = tmp_path / "pre" / "preprocessor.json"
    pre.save(path)
    state = json.loads(path.read_text())
    assert state["config"] == cfg.model_dump(mode="json")
    assert [set(c) for c in state["series"].values()] == [{"y", "HUFL", "LULL"}]

    loaded = Preprocessor.load(path)
    assert loaded.cfg == cfg and loaded.series == pre.series
    holes = etth1.copy()
    holes.loc[[5, 50, 500], ["y", "LULL"]] = np.nan
    pd.testing.assert_frame_equal(loaded.transform(holes), pre.transform(holes), check_exact=True)
    y = etth1["y"].to_numpy()
    np.testing.assert_array_equal(
        loaded.inverse_transform_target(y), pre.inverse_transform_target(y)
    )
    assert Preprocessor.from_dict(pre.to_dict()).series == pre.series


def test_misuse_errors(etth1: pd.DataFrame) -> None:
    pre = Preprocessor(PreprocessConfig())
    with pytest.raises(RuntimeError, match="not fitted"):
        pre.transform(etth1)
    pre.fit(etth1[["unique_id", "ds", "y"]])
    with pytest.raises(ValueError, match=r"columns \['HUFL', 'LULL'\] were not seen in fit"):
        pre.transform(etth1)
    with pytest.raises(ValueError, match="format_version"):
        Preprocessor.from_dict({**pre.to_dict(), "format_version": 99})


def only(pre: Preprocessor) -> dict[str, dict[str, float]]:
    """The statistics of a preprocessor fitted on one series."""
    (stats,) = pre.series.values()
    return stats


def test_statistics_per_series_and_unknown_series_named() -> None:
    ds = pd.date_range("2021-01-01", periods=4, freq="h")
    frame = pd.DataFrame(
        {"unique_id": ["a"] * 4 + ["b"] * 4, "ds": list(ds) * 2,
         "y": [1.0, 2.0, 3.0, 4.0, 100.0, 200.0, 300.0, 400.0]}
    )
    pre = Preprocessor(PreprocessConfig(scaler="minmax")).fit(frame)
    assert pre.series_ids == ["a", "b"]
    assert pre.series["b"]["y"] == {"mean": 250.0, "center": 100.0, "scale": 300.0}
    scaled = pre.transform(frame)["y"].to_numpy()
    np.testing.assert_allclose(scaled[:4], scaled[4:])  # same shape, own scale
    windows = np.array([[1.0, 4.0], [100.0, 400.0]])
    np.testing.assert_allclose(pre.transform_target(windows, ["a", "b"]), [[0, 1], [0, 1]])
    back = pre.inverse_transform_target(np.array([[0.0, 1.0]] * 2), ["b", "a"])
    np.testing.assert_allclose(back, [[100.0, 400.0], [1.0, 4.0]])
    with pytest.raises(KeyError, match=r"unknown series 'zz'.*2 series.*\('a', 'b'\)"):
        pre.transform_target(windows, ["a", "zz"])
    reloaded = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_allclose(reloaded.transform(frame)["y"], scaled)
