"""Promotion evidence with real fitted bundles on an ETTh1 slice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.bundle import ForecastBundle
from pipelines.config import PreprocessConfig
from pipelines.models.registry import build_model
from pipelines.preprocess import Preprocessor
from pipelines.promotion import PromotionPolicy, compare_backtest, decide, live_evidence
from pipelines.significance import Decision

ETTH1 = Path(__file__).resolve().parents[2] / "data" / "ETTh1.csv"
HORIZON = 12


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    raw = pd.read_csv(ETTH1, nrows=3000)
    return pd.DataFrame(
        {"unique_id": "ETTh1", "ds": pd.to_datetime(raw["date"]), "y": raw["OT"].astype(float)}
    )


def _bundle(series: pd.DataFrame, algorithm: str, **params: object) -> ForecastBundle:
    train = series.iloc[:2000]
    pre = Preprocessor(PreprocessConfig()).fit(train)
    y = pre.transform_target(series["y"].to_numpy(float))
    model = build_model(algorithm, HORIZON, **params).fit(y[:2000])
    model.calibrate(y, np.arange(2000, 2200))
    return ForecastBundle(pre, model, {"series_id": "ETTh1"})


def test_clearly_better_challenger_is_promoted(series):
    champion = _bundle(series, "seasonal_naive", season=24)
    challenger = _bundle(series, "nlinear", lookback=96)
    result, mae = compare_backtest(champion, challenger, series, PromotionPolicy())
    assert result.decision is Decision.PROMOTE, result.reason
    assert mae["challenger"] < mae["champion"]
    evidence = decide(result, None, mae)
    assert evidence.promote and "no live A/B errors yet" in evidence.reason


def test_identical_models_are_not_promoted(series):
    champion = _bundle(series, "nlinear", lookback=96)
    result, mae = compare_backtest(champion, champion, series, PromotionPolicy())
    assert result.decision is Decision.KEEP
    evidence = decide(result, None, mae)
    assert not evidence.promote
    assert (
        json.loads(json.dumps(evidence.as_dict(), allow_nan=False))["backtest"]["p_value"] is None
    )


def test_worse_challenger_is_kept(series):
    champion = _bundle(series, "nlinear", lookback=96)
    challenger = _bundle(series, "seasonal_naive", season=24)
    result, _ = compare_backtest(champion, challenger, series, PromotionPolicy())
    assert result.decision is Decision.KEEP
    assert "worse" in result.reason


def test_short_window_is_a_clear_error(series):
    bundle = _bundle(series, "nlinear", lookback=96)
    with pytest.raises(ValueError, match="backtest needs more than 108 rows"):
        compare_backtest(bundle, bundle, series.iloc[:100], PromotionPolicy())


def _live(champion_err: np.ndarray, challenger_err: np.ndarray) -> pd.DataFrame:
    n = len(champion_err)
    ds = pd.date_range("2024-01-01", periods=n, freq="h")
    rows = [
        pd.DataFrame({"variant": v, "series_id": "s", "ds": ds, "step": 1, "error": e})
        for v, e in (("champion", champion_err), ("challenger", challenger_err))
    ]
    return pd.concat(rows, ignore_index=True)


def test_live_evidence_can_veto_and_confirm(series):
    champion = _bundle(series, "seasonal_naive", season=24)
    challenger = _bundle(series, "nlinear", lookback=96)
    backtest, mae = compare_backtest(champion, challenger, series, PromotionPolicy())
    rng = np.random.default_rng(0)
    worse_live = live_evidence(
        _live(rng.normal(0, 1, 200), rng.normal(0, 3, 200)), PromotionPolicy()
    )
    assert not decide(backtest, worse_live, mae).promote
    better_live = live_evidence(
        _live(rng.normal(0, 3, 200), rng.normal(0, 1, 200)), PromotionPolicy()
    )
    assert decide(backtest, better_live, mae).promote
    few = live_evidence(_live(rng.normal(0, 3, 5), rng.normal(0, 1, 5)), PromotionPolicy())
    assert few.decision is Decision.INSUFFICIENT_DATA
    assert decide(backtest, few, mae).promote  # too little live data: the backtest decides
    assert (
        live_evidence(
            _live(np.ones(3), np.ones(3)).query("variant == 'champion'"), PromotionPolicy()
        )
        is None
    )
