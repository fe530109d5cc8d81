"""The weighted ensemble on eight M4 hourly series through the pipeline and a real MLflow
store: members and weights chosen by greedy selection on the validation windows, so it never
scores worse there than its best member in sample; it is selected on its cross-fitted score
(weights fitted on one half of each series' windows, scored on the other), recomputed here from
the members' saved forecasts; the weights are logged, saved in the bundle and reproduced by the
registered pyfunc."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from pipelines import artifact_store, evaluation, naive2
from pipelines.bundle import ForecastBundle
from pipelines.home import TidemillHome
from pipelines.models.ensemble import Ensemble
from pipelines.workflow import VAL_FORECASTS, run_pipeline

from .conftest import REPO, m4_slice

IDS = ["H1", "H10", "H20", "H30", "H40", "H50", "H60", "H70"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weighted")
    data = m4_slice(IDS, 300, tmp / "panel.parquet")
    cfg = yaml.safe_load((REPO / "configs" / "m4_hourly.yaml").read_text())
    cfg.update(
        name="weighted",
        horizon=24,
        split={"val_size": 48, "test_size": 24},
        algorithms={
            "seasonal_naive": {"params": {"season": 24}},
            "theta": {"params": {"lookback": 96}},
            "nlinear": {"params": {"lookback": 48, "alpha": 10.0}},
        },
        ensemble={"enabled": True, "top_k": 3, "combine": "weighted", "rounds": 6},
        tuning={**cfg["tuning"], "n_trials": 1},
        mlflow={"experiment": "weighted", "registered_model_name": "weighted-forecaster"},
    )
    cfg["data"]["source"]["path"] = str(tmp / "panel.parquet")
    path = tmp / "weighted.yaml"
    path.write_text(yaml.safe_dump(cfg))
    home = TidemillHome.resolve(tmp / "home")
    return home, run_pipeline(path, home, run_key="weighted"), data


def test_weights_from_validation_never_lose_to_the_best_member(trained):
    home, result, _ = trained
    by_algo = {c["algorithm"]: c for c in result["candidates"]}
    assert set(by_algo) == {"seasonal_naive", "theta", "nlinear", "ensemble"}
    singles = {a: c["val_metric"] for a, c in by_algo.items() if a != "ensemble"}
    run = MlflowClient(home.mlflow_uri).get_run(by_algo["ensemble"]["run_id"])
    in_sample = run.data.metrics["selection_score_in_sample"]
    assert in_sample == pytest.approx(run.data.metrics["val_owa"], rel=1e-12)
    assert in_sample <= min(singles.values()) + 1e-9, by_algo
    members = json.loads(run.data.params["hp.members"].replace("'", '"'))
    weights = json.loads(run.data.params["hp.weights"])
    assert run.data.params["hp.combine"] == "weighted"
    assert set(members) <= set(singles) and len(members) == len(weights)
    assert all(w > 0 for w in weights) and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert all(np.isclose(w * 6, round(w * 6), atol=1e-4) for w in weights)  # counts / 6 rounds
    test = by_algo["ensemble"]["test"]
    assert test["owa"] > 0 and 0.5 <= test["coverage"] <= 1


def test_the_selection_score_is_the_cross_fitted_one(trained):
    home, result, data = trained
    by_algo = {c["algorithm"]: c for c in result["candidates"]}
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    run = client.get_run(by_algo["ensemble"]["run_id"])
    metrics, params = run.data.metrics, run.data.params
    halves = [json.loads(params[f"cross_fit.weights_{h}_half"]) for h in ("first", "second")]
    assert list(halves[0]) == list(halves[1]) == sorted(
        (a for a in by_algo if a != "ensemble"), key=lambda a: by_algo[a]["val_metric"])
    # 8 series of 48 validation rows: 25 windows of 24 each, 12 in the first half
    assert json.loads(params["cross_fit.windows_first_half"]) == 8 * 12
    assert json.loads(params["cross_fit.windows_second_half"]) == 8 * 13
    assert metrics["selection_windows"] == 8 * 25

    # recomputed: each half forecast with the weights fitted on the other half
    with artifact_store.local_copy(
            artifact_store.join(by_algo["seasonal_naive"]["candidate"], "bundle")) as d:
        pre = ForecastBundle.load(d).preprocessor
    ids = pre.series_ids
    forecasts = {}
    for algo in halves[0]:
        with artifact_store.local_file(
                artifact_store.join(by_algo[algo]["candidate"], VAL_FORECASTS)) as f:
            forecasts[algo] = np.load(f).reshape(8, 25, 24)
    ys = {uid: g["y"].to_numpy(float) for uid, g in data.groupby("unique_id", sort=False)}
    origins = np.arange(300 - 72, 300 - 72 + 25)
    actual = np.stack([evaluation.actual_windows(ys[uid], origins, 24) for uid in ids])
    np.testing.assert_allclose(  # the saved rows are the series' windows in this order
        pre.inverse_transform_target(forecasts["seasonal_naive"].reshape(-1, 24),
                                     np.repeat(ids, 25)).reshape(8, 25, 24),
        np.stack([evaluation.actual_windows(ys[uid], origins - 24, 24) for uid in ids]),
        rtol=1e-9)
    scaled = np.concatenate([
        sum(w * forecasts[a][:, :12] for a, w in halves[1].items()),  # first half, second's
        sum(w * forecasts[a][:, 12:] for a, w in halves[0].items()),  # second half, first's
    ], axis=1)
    point = pre.inverse_transform_target(scaled.reshape(-1, 24), np.repeat(ids, 25))
    truth = actual.reshape(-1, 24)
    dens = np.repeat([evaluation.mase_scale(ys[uid][:228], 24) for uid in ids], 25)[:, None]
    ref = np.concatenate([naive2.forecast(ys[uid], origins, 24, 24) for uid in ids])
    ours = evaluation.evaluate(truth, point, None, None, dens).overall
    theirs = evaluation.evaluate(truth, ref, None, None, dens).overall
    owa = naive2.owa(ours["smape"], ours["mase"], theirs["smape"], theirs["mase"])
    assert metrics["selection_score_cross_fitted"] == pytest.approx(owa, rel=1e-4)
    assert metrics["selection_score"] == metrics["selection_score_cross_fitted"]
    assert by_algo["ensemble"]["val_metric"] == metrics["selection_score"]
    assert metrics["selection_score"] != pytest.approx(metrics["selection_score_in_sample"])

    # what select() ranked and register() tagged
    best = min(result["candidates"], key=lambda c: c["val_metric"])
    assert result["registered"]["algorithm"] == best["algorithm"]
    version = client.get_model_version("weighted-forecaster", result["registered"]["version"])
    assert float(version.tags["tidemill.val_owa"]) == pytest.approx(best["val_metric"], rel=1e-5)


def test_saved_weights_reproduce_the_forecasts_in_the_bundle_and_the_pyfunc(trained):
    home, result, data = trained
    candidate = next(c for c in result["candidates"] if c["algorithm"] == "ensemble")
    hist = data.groupby("unique_id", sort=False).tail(200)
    windows = np.stack([g["y"].to_numpy(float) for _, g in hist.groupby("unique_id", sort=False)])
    last_ds = hist.groupby("unique_id", sort=False)["ds"].last().to_numpy("datetime64[ns]")
    with artifact_store.local_copy(artifact_store.join(candidate["candidate"], "bundle")) as d:
        meta = json.loads((d / "forecaster" / "forecaster.json").read_text())
        bundle = ForecastBundle.load(d)  # local members read their series while it exists
        model = bundle.forecaster
        assert isinstance(model, Ensemble) and model.combine == "weighted"
        assert meta["params"]["weights"] == model.weights
        assert meta["ensemble"] == model.params["members"]
        out = bundle.forecast(windows, last_ds, ids=IDS)
        scaled = bundle.preprocessor.transform_target(windows, IDS)  # the members' scale
        parts = [m.predict(scaled, last_ds, IDS) if m.local else m.predict(scaled, last_ds)
                 for m in model.members]
        np.testing.assert_allclose(model.predict(scaled, last_ds, IDS),
                                   np.tensordot(model.weights, np.stack(parts), axes=1))
    assert (out.lower < out.yhat).all() and (out.yhat < out.upper).all()
    mlflow.set_tracking_uri(home.mlflow_uri)
    served = mlflow.pyfunc.load_model(candidate["model_uri"]).predict(
        hist, params={"horizon": 24})
    yhat = np.stack([g["yhat"].to_numpy() for _, g in served.groupby("unique_id", sort=False)])
    np.testing.assert_allclose(yhat, out.yhat, rtol=1e-9)
