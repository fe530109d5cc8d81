"""``split.refit`` on eight M4 hourly series through the pipeline and a real MLflow store, run
beside the same config without it: validation (scores, selection, ensemble weights, intervals)
is untouched; the test window and the registered bundle use each candidate fitted again on
train + validation, an ensemble combines its members' refits, and test MASE is scaled over
every value before the test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines import artifact_store, evaluation
from pipelines.bundle import ForecastBundle
from pipelines.home import TidemillHome
from pipelines.models.registry import build_model
from pipelines.workflow import VAL_BUNDLE, run_pipeline

from .conftest import REPO, m4_slice

IDS = ["H1", "H10", "H20", "H30", "H40", "H50", "H60", "H70"]
N, VAL, TEST = 300, 48, 24


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refit")
    data = m4_slice(IDS, N, tmp / "panel.parquet")
    base = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    out = {}
    for refit in (False, True):
        cfg = {
            **base,
            "name": f"refit-{refit}",
            "horizon": TEST,
            "split": {"val_size": VAL, "test_size": TEST, "refit": refit},
            "algorithms": {
                "seasonal_naive": {"params": {"season": 24}},
                "theta": {"params": {"lookback": 96}},
                "nlinear": {"params": {"lookback": 48, "alpha": 10.0}},
            },
            "ensemble": {"enabled": True, "top_k": 3, "combine": "weighted", "rounds": 6},
            "tuning": {**base["tuning"], "n_trials": 1},
            "mlflow": {"experiment": "refit", "registered_model_name": f"refit-{refit}"},
        }
        cfg["data"] = {**base["data"], "source": {"kind": "parquet",
                                                   "path": str(tmp / "panel.parquet")}}
        path = tmp / f"refit-{refit}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        result = run_pipeline(path, TidemillHome.resolve(tmp / f"home-{refit}"), run_key="r")
        out[refit] = {c["algorithm"]: c for c in result["candidates"]}
    return out, data


def _bundle(candidate: dict, name: str = "bundle"):
    with artifact_store.local_copy(artifact_store.join(candidate["candidate"], name)) as d:
        bundle = ForecastBundle.load(d)
        for member in getattr(bundle.forecaster, "members", []):  # read local members' series
            for uid in getattr(member, "ids", []):
                member.model(uid)
        for uid in getattr(bundle.forecaster, "ids", []):
            bundle.forecaster.model(uid)
        return bundle


def test_validation_is_the_same_with_and_without_refit(runs):
    by_refit, _ = runs
    assert set(by_refit[True]) == set(by_refit[False]) == {
        "seasonal_naive", "theta", "nlinear", "ensemble"}
    for algo, candidate in by_refit[True].items():
        assert candidate["val_metric"] == pytest.approx(by_refit[False][algo]["val_metric"],
                                                        rel=1e-9), algo
        assert candidate["val"]["coverage"] == pytest.approx(
            by_refit[False][algo]["val"]["coverage"]), algo
    # the fits differ, so do their test scores (seasonal naive's forecasts do not)
    assert by_refit[True]["nlinear"]["test"]["smape"] != pytest.approx(
        by_refit[False]["nlinear"]["test"]["smape"])
    assert by_refit[True]["seasonal_naive"]["test"]["smape"] == pytest.approx(
        by_refit[False]["seasonal_naive"]["test"]["smape"], rel=1e-12)


def test_test_mase_is_scaled_over_every_value_before_the_test(runs):
    by_refit, data = runs
    ys = {u: g["y"].to_numpy(float) for u, g in data.groupby("unique_id", sort=False)}
    for refit, insample in ((False, N - VAL - TEST), (True, N - TEST)):
        mase = np.mean([  # seasonal naive's one test window per series
            np.mean(np.abs(y[N - TEST:] - y[N - TEST - 24 : N - 24]))
            / evaluation.mase_scale(y[:insample], 24) for y in ys.values()])
        assert by_refit[refit]["seasonal_naive"]["test"]["mase"] == pytest.approx(mase, rel=1e-9)


def test_the_registered_fit_is_on_train_and_validation(runs):
    by_refit, data = runs
    refit, fitted_on_train = _bundle(by_refit[True]["nlinear"]), _bundle(
        by_refit[False]["nlinear"])
    pre, model = refit.preprocessor, refit.forecaster
    last = data.groupby("unique_id")["ds"].nth(N - TEST - 1).max()
    assert pd.Timestamp(refit.meta["trained_until"]) == last
    assert pd.Timestamp(fitted_on_train.meta["trained_until"]) == last - pd.Timedelta(hours=VAL)
    scaled = {u: g["y"].to_numpy() for u, g in pre.transform(
        data.assign(unique_id=data["unique_id"].astype(str))).groupby("unique_id", sort=False)}
    by_hand = build_model("nlinear", TEST, **model.params).fit(
        [scaled[u][: N - TEST] for u in pre.series_ids])
    windows = np.stack([scaled[u][N - TEST - 48 : N - TEST] for u in pre.series_ids])
    np.testing.assert_allclose(model.predict(windows), by_hand.predict(windows), rtol=1e-9)
    assert not np.allclose(model.predict(windows), fitted_on_train.forecaster.predict(windows))
    # intervals: calibrated on validation by the fit on train, carried to the refit
    np.testing.assert_allclose(model.interval_halfwidth,
                               fitted_on_train.forecaster.interval_halfwidth)
    # the fit validation scored is kept for ensembles, equal to the run without refit
    on_train = _bundle(by_refit[True]["nlinear"], VAL_BUNDLE)
    np.testing.assert_allclose(on_train.forecaster.predict(windows),
                               fitted_on_train.forecaster.predict(windows), rtol=1e-12)


def test_the_ensemble_combines_its_members_refits(runs):
    by_refit, data = runs
    bundle = _bundle(by_refit[True]["ensemble"])
    model = bundle.forecaster
    assert model.combine == "weighted"
    members = [_bundle(by_refit[True][name]).forecaster for name in model.params["members"]]
    pre = bundle.preprocessor
    hist = data.groupby("unique_id", sort=False).head(N - TEST).groupby(
        "unique_id", sort=False).tail(200)
    raw = np.stack([g["y"].to_numpy(float) for _, g in hist.groupby("unique_id", sort=False)])
    last_ds = hist.groupby("unique_id", sort=False)["ds"].last().to_numpy("datetime64[ns]")
    scaled = pre.transform_target(raw, IDS)
    parts = [m.predict(scaled, last_ds, IDS) if m.local else m.predict(scaled, last_ds)
             for m in members]
    np.testing.assert_allclose(model.predict(scaled, last_ds, IDS),
                               np.tensordot(model.weights, np.stack(parts), axes=1))
