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


# ----- panels: several series, per-series (local) and global models -----------------------------
M4 = Path(__file__).resolve().parents[2] / "data" / "m4" / "hourly_long.parquet"
PANEL_IDS = ["H1", "H20", "H150", "H300"]


@pytest.fixture(scope="module")
def m4_panel() -> pd.DataFrame:
    data = pd.read_parquet(M4)
    data = data[data["unique_id"].isin(PANEL_IDS)].groupby("unique_id", sort=False).tail(600)
    return data.reset_index(drop=True)


def _panel_bundle(frame: pd.DataFrame, algorithm: str, **params: object) -> ForecastBundle:
    from pipelines import panel

    train = frame.groupby("unique_id", sort=False).head(400)
    pre = Preprocessor(PreprocessConfig()).fit(train)
    ys = [pre.transform_target(g["y"].to_numpy(float), [uid] * len(g))
          for uid, g in train.groupby("unique_id", sort=False)]
    model = panel.fit(algorithm, 24, params, ys, [None] * len(ys), PANEL_IDS)
    if model.interval_halfwidth is None and not model.local:
        model.interval_halfwidth = np.ones(24)
    return ForecastBundle(pre, model, {"n_series": len(PANEL_IDS)})


def test_panel_backtest_promotes_better_local_model_over_all_series(m4_panel):
    champion = _panel_bundle(m4_panel, "seasonal_naive", season=1)  # repeat the last value
    challenger = _panel_bundle(m4_panel, "ets", seasonal="add", lookback=168)
    policy = PromotionPolicy(backtest_rows=150)
    result, mase = compare_backtest(champion, challenger, m4_panel, policy)
    assert result.decision is Decision.PROMOTE, result.reason
    assert mase["challenger"] < mase["champion"]
    assert 0.1 < mase["challenger"] < 5  # mean MASE over series: scale-free
    # one series whose level is 1000x larger does not decide alone
    loud = m4_panel.assign(y=np.where(m4_panel["unique_id"] == "H1", m4_panel["y"] * 1000.0,
                                      m4_panel["y"]))
    big = _panel_bundle(loud, "seasonal_naive", season=1), _panel_bundle(
        loud, "ets", seasonal="add", lookback=168)
    _, loud_mase = compare_backtest(*big, loud, policy)
    assert loud_mase["challenger"] == pytest.approx(mase["challenger"], rel=1e-3)


def test_panel_backtest_skips_unknown_series_and_names_none_known(m4_panel):
    bundle = _panel_bundle(m4_panel, "seasonal_naive", season=24)
    extra = m4_panel[m4_panel["unique_id"] == "H1"].assign(unique_id="H999")
    policy = PromotionPolicy(backtest_rows=150)
    result, _ = compare_backtest(bundle, bundle, pd.concat([m4_panel, extra]), policy)
    assert result.decision is Decision.KEEP
    with pytest.raises(ValueError, match="none of the 1 series in the window is known"):
        compare_backtest(bundle, bundle, extra, policy)
    one = m4_panel[m4_panel["unique_id"] == "H20"]  # one series of a panel model
    result, mae = compare_backtest(bundle, bundle, one, policy)
    assert result.decision is Decision.KEEP and mae["champion"] > 0


def test_live_panel_errors_are_scaled_per_series():
    rng = np.random.default_rng(1)
    a = _live(rng.normal(0, 3, 100), rng.normal(0, 1, 100)).assign(series_id="a")
    b = _live(rng.normal(0, 1, 100), rng.normal(0, 1.5, 100)).assign(series_id="b")
    errors = pd.concat([a, b.assign(error=b["error"] * 1000.0)], ignore_index=True)
    raw = live_evidence(errors, PromotionPolicy())
    assert raw.mean_loss_diff < 0 and not raw.promote  # unscaled, the large series b decides
    scaled = live_evidence(errors, PromotionPolicy(), {"a": 1.0, "b": 1000.0})
    assert scaled.mean_loss_diff > 0 and scaled.promote, scaled.reason
    only_a = live_evidence(errors, PromotionPolicy(), {"a": 1.0})  # b has no scale: left out
    assert only_a.n == 100 and only_a.promote
