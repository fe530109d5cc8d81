"""The preprocess stage on M4 hourly series: the prepared panel of a snapshot whose rows are
interleaved is the one of the same rows grouped by series (the grouped one is taken without a
copy), ``Preprocessor.scaled_columns`` gives ``transform``'s values without copying the frame,
with gaps imputed and the log target, and ``panel.read_prepared`` gives each series its rows
(slices of the file's columns) and names a file whose rows are not grouped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import artifact_store, panel, workflow
from pipelines.config import PreprocessConfig
from pipelines.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def m4() -> pd.DataFrame:
    """12 M4 hourly series, their last 400 values, every 97th value missing."""
    data = pd.read_parquet(REPO / "data" / "m4" / "hourly_long.parquet")
    data = data[data["unique_id"].isin(data["unique_id"].unique()[:12])]
    data = data.groupby("unique_id", sort=False).tail(400).reset_index(drop=True)
    data.loc[data.index[::97], "y"] = np.nan
    return data


def _prepared_url(frame: pd.DataFrame, root: Path) -> str:
    root.mkdir()
    frame.to_parquet(root / "panel.parquet", index=False)
    config = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    config["data"]["source"]["path"] = str(root / "panel.parquet")
    config["split"] = {**config["split"], "val_size": 48}
    config["algorithms"] = {"seasonal_naive": {"params": {"season": 24}}}
    (root / "panel.yaml").write_text(yaml.safe_dump(config))
    ingested = workflow.ingest(root / "panel.yaml", str(root / "run"))
    return workflow.preprocess(ingested, str(root / "run"))["prepared"]


def _prepared(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    return artifact_store.read_parquet(_prepared_url(frame, root))


def test_interleaved_rows_are_prepared_as_grouped_ones(m4: pd.DataFrame, tmp_path: Path) -> None:
    shuffled = m4.sort_values("ds", kind="stable")
    assert shuffled["unique_id"].iloc[0] != shuffled["unique_id"].iloc[1]  # interleaved
    grouped = _prepared(m4, tmp_path / "grouped")
    interleaved = _prepared(shuffled, tmp_path / "interleaved")
    pd.testing.assert_frame_equal(interleaved, grouped, check_exact=True)
    assert list(grouped["unique_id"].unique()) == list(m4["unique_id"].unique())
    assert grouped["y"].isna().sum() == m4["y"].isna().sum()  # raw values kept as they were
    assert np.isfinite(grouped["y_scaled"]).all()  # gaps imputed, log-scaled
    train = grouped[grouped["split"] == "train"].groupby("unique_id")["y_scaled"]
    np.testing.assert_allclose(train.mean(), 0.0, atol=0.05)  # scaled per series (gaps filled)


@pytest.mark.parametrize("imputation", ["linear", "mean", "none"])
def test_scaled_columns_are_the_values_transform_writes(m4: pd.DataFrame, imputation: str
                                                        ) -> None:  # fmt: skip
    frame = m4.assign(price=np.log1p(m4["y"].fillna(1.0)))
    if imputation == "none":
        frame = frame.dropna()  # no gaps: every mode leaves the values as they are
    pre = Preprocessor(PreprocessConfig(imputation=imputation, scaler="standard",
                                        target_transform="log")).fit(frame)  # fmt: skip
    before = frame.copy()
    columns, scaled = pre.scaled_columns(frame)
    assert columns == ["y", "price"] and scaled.shape == (len(frame), 2)
    np.testing.assert_array_equal(scaled, pre.transform(frame)[columns].to_numpy())
    pd.testing.assert_frame_equal(frame, before)  # the frame is left as it was
    assert np.isfinite(scaled).all()


def test_read_prepared_gives_each_series_rows(m4: pd.DataFrame, tmp_path: Path) -> None:
    url = _prepared_url(m4, tmp_path / "p")
    frame = artifact_store.read_parquet(url)
    series = panel.read_prepared(url)
    assert [s.uid for s in series] == list(m4["unique_id"].unique())
    for s in series:
        rows = frame[frame["unique_id"] == s.uid]
        np.testing.assert_array_equal(s.ds, rows["ds"].to_numpy("datetime64[ns]"))
        np.testing.assert_array_equal(s.y_raw, rows["y"].to_numpy(float))
        np.testing.assert_array_equal(s.y, rows["y_scaled"].to_numpy(float))
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(s, part),
                                          np.flatnonzero(rows["split"].to_numpy() == part))
        assert (len(s.train), len(s.val), len(s.test)) == (400 - 96, 48, 48)
    shuffled = artifact_store.join(str(tmp_path), "shuffled.parquet")
    artifact_store.write_parquet(frame.sort_values("ds", kind="stable"), shuffled)
    with pytest.raises(ValueError, match="rows are not grouped by series"):
        panel.read_prepared(shuffled)
