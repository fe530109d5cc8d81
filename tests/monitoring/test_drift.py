"""Drift check on ETTh1: decisions, reports, MLflow, Evidently workspace and the gauges, in a
local home and in an S3 artifact store (a real SeaweedFS server)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently.ui.workspace import Workspace
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.drift import DriftConfig, check_drift
from monitoring.drift_check import DriftCheckOutcome, run_drift_check
from monitoring.drift_metrics import metrics_url, write_drift_metrics
from monitoring.drift_reports import MONITORING_EXPERIMENT, workspace_url
from monitoring.lineage import champion_lineage
from pipelines import artifact_store
from pipelines.data.snapshot import write_snapshot
from pipelines.home import TidemillHome
from pipelines.settings import Settings
from serving.textfile_metrics import TextfileCollector
from tests.servers import seaweedfs

MODEL = "tidemill-etth1-ot"
SPLIT = 6160  # reference = rows before, current = the following week
WEEK = 168


@pytest.fixture(scope="module")
def windows(etth1_long: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = etth1_long.iloc[:SPLIT].reset_index(drop=True)
    current = etth1_long.iloc[SPLIT : SPLIT + WEEK].reset_index(drop=True)
    return reference, current


def predictions_for(
    current: pd.DataFrame, noise: float, half_width: float, variant: str = "champion", seed=0
) -> pd.DataFrame:
    """Forecast steps with actuals: yhat = y + noise, a symmetric interval of ``half_width``."""
    yhat = current["y"].to_numpy() + np.random.default_rng(seed).normal(
        scale=noise, size=len(current)
    )
    return pd.DataFrame(
        {
            "unique_id": current["unique_id"],
            "ds": current["ds"],
            "yhat": yhat,
            "yhat_lower": yhat - half_width,
            "yhat_upper": yhat + half_width,
            "variant": variant,
            "y": current["y"],
        }
    )


def shifted(current: pd.DataFrame, reference: pd.DataFrame, columns: list[str], k: float):
    out = current.copy()
    for col in columns:
        out[col] = out[col] + k * reference[col].std()
    return out


def test_unshifted_window_has_no_drift(windows) -> None:
    reference, current = windows
    res = check_drift(reference, current, predictions_for(current, noise=0.5, half_width=0.8))
    assert not res.detected, res.reason
    assert res.reason == "no drift" and res.drifted_columns == []
    assert set(res.column_scores) == {"y", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"}
    assert max(res.column_scores.values()) < res.config.column_threshold
    assert set(res.snapshots) == {"data_drift", "prediction_drift", "quality_champion"}


def test_shifted_window_drifts_and_names_the_columns(windows) -> None:
    reference, current = windows
    moved = ["y", "HUFL", "MUFL", "LUFL"]
    res = check_drift(reference, shifted(current, reference, moved, 2.0))
    assert res.detected
    assert sorted(res.drifted_columns) == sorted(moved)
    assert res.drift_share == pytest.approx(4 / 7)
    assert "data drift in 4/7 columns" in res.reason
    for col in moved:
        assert f"{col} (" in res.reason
    assert "HULL" not in res.reason


def test_fewer_drifted_columns_than_the_share_is_no_drift(windows) -> None:
    reference, current = windows
    res = check_drift(reference, shifted(current, reference, ["HUFL", "MUFL"], 2.0))
    assert sorted(res.drifted_columns) == ["HUFL", "MUFL"] and not res.detected
    assert check_drift(
        reference,
        shifted(current, reference, ["HUFL", "MUFL"], 2.0),
        config=DriftConfig(drift_share=0.25),
    ).detected


def test_coverage_outside_band_is_drift(windows) -> None:
    reference, current = windows
    narrow = predictions_for(current, noise=1.0, half_width=0.3)
    res = check_drift(reference, current, narrow, champion_val_mae=5.0)
    q = res.quality["champion"]
    assert q.n_actuals == WEEK and q.coverage < 0.8
    assert res.detected and len(res.reasons) == 1
    assert "interval coverage" in res.reason and "outside [80%, 99%]" in res.reason


def test_error_above_validation_by_margin_is_drift(windows) -> None:
    reference, current = windows
    preds = predictions_for(current, noise=1.0, half_width=1.7)  # coverage ~90%
    mae = float(np.mean(np.abs(preds["y"] - preds["yhat"])))
    fine = check_drift(reference, current, preds, champion_val_mae=mae / 1.2)
    assert fine.quality["champion"].mae == pytest.approx(mae)
    assert 0.8 <= fine.quality["champion"].coverage <= 0.99
    assert not fine.detected, fine.reason
    worse = check_drift(reference, current, preds, champion_val_mae=mae / 1.3)
    assert worse.detected and "live MAE" in worse.reason and "by more than 25%" in worse.reason


def test_quality_rules_judge_the_champion_and_need_enough_actuals(windows) -> None:
    reference, current = windows
    champion = predictions_for(current, noise=1.0, half_width=1.7)
    challenger = predictions_for(current, noise=5.0, half_width=0.1, variant="challenger")
    res = check_drift(reference, current, pd.concat([champion, challenger]), champion_val_mae=1.0)
    assert set(res.quality) == {"champion", "challenger"} and not res.detected
    assert res.quality["challenger"].mae > 3
    few = champion.copy()
    few.loc[few.index[10:], "y"] = np.nan  # only 10 actuals so far
    res = check_drift(reference, current, few, champion_val_mae=0.01)
    assert not res.detected and res.quality["champion"].n_actuals == 10
    assert any("10 actuals < 24" in note for note in res.notes)
    assert "quality_champion" not in res.snapshots


def test_invalid_inputs_are_reported(windows) -> None:
    reference, current = windows
    with pytest.raises(ValueError, match="missing"):
        check_drift(reference, current.drop(columns=["HUFL"]))
    with pytest.raises(ValueError, match="lack column"):
        check_drift(reference, current, pd.DataFrame({"ds": current["ds"], "y": current["y"]}))
    with pytest.raises(ValueError, match="unknown drift config"):
        DriftConfig.from_mapping({"drift_shar": 0.3})
    with pytest.raises(ValueError, match="coverage_band"):
        DriftConfig.from_mapping({"coverage_band": [0.95, 0.8]})
    assert DriftConfig.from_mapping({"coverage_band": [0.7, 0.95]}).coverage_band == (0.7, 0.95)
    with pytest.raises(ValueError, match="not a distance"):
        DriftConfig(method="ks")


@pytest.fixture(scope="module")
def outcome(windows, tmp_path_factory) -> tuple[DriftCheckOutcome, TidemillHome]:
    reference, current = windows
    home = TidemillHome.resolve(tmp_path_factory.mktemp("home"))
    preds = predictions_for(current, noise=1.0, half_width=0.3)
    result = run_drift_check(
        reference,
        shifted(current, reference, ["y", "HUFL", "MUFL", "LUFL"], 2.0),
        preds,
        home=home,
        model=MODEL,
        version="3",
        champion_val_mae=0.5,
        now=datetime(2024, 5, 1, 6, tzinfo=UTC),
    )
    return result, home


def test_reports_are_written_and_parse(outcome) -> None:
    out, home = outcome
    # the artifact store is the home by default: the report URL is a folder in it
    report_dir = home.reports_dir / MODEL / "20240501T060000Z"
    assert out.report_dir == str(report_dir)
    for name in ("data_drift", "prediction_drift", "quality_champion"):
        html = (report_dir / f"{name}.html").read_text()
        assert html.lstrip().lower().startswith("<!doctype html>") and "</html>" in html
        metrics = json.loads((report_dir / f"{name}.json").read_text())["metrics"]
        assert metrics
    decision = json.loads((report_dir / "decision.json").read_text())
    assert decision["detected"] is True and len(decision["reasons"]) == 3
    assert json.loads(json.dumps(out.summary()))["mlflow_run_id"] == out.mlflow_run_id


def test_logged_to_mlflow_under_the_monitoring_experiment(outcome) -> None:
    out, home = outcome
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    exp = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    assert exp is not None and exp.artifact_location == home.artifacts_dir.as_uri()
    run = client.get_run(out.mlflow_run_id)
    assert run.info.experiment_id == exp.experiment_id and run.info.status == "FINISHED"
    assert run.data.metrics["drift_detected"] == 1.0
    assert run.data.metrics["drift_share"] == pytest.approx(4 / 7)
    assert run.data.metrics["coverage.champion"] < 0.8
    assert run.data.tags["tidemill.model_version"] == "3"
    assert "data drift in 4/7 columns" in run.data.tags["tidemill.drift.reason"]
    assert run.data.params["drift.column_threshold"] == "1.0"
    logged = {f.path for f in client.list_artifacts(out.mlflow_run_id, "reports")}
    assert {"reports/data_drift.html", "reports/data_drift.json", "reports/decision.json"} <= logged


def test_evidently_workspace_holds_the_snapshots(outcome) -> None:
    out, home = outcome
    workspace = Workspace(workspace_url(Settings.resolve(home)))
    assert workspace.path == str(home.reports_dir / "evidently-workspace")
    [project] = workspace.search_project(MODEL)
    runs = {str(r) for r in workspace.list_runs(project.id)}
    assert runs == set(out.workspace_runs.values()) and len(runs) == 3
    snapshot = workspace.get_run(project.id, out.workspace_runs["data_drift"])
    assert snapshot.metadata["version"] == "3"
    assert snapshot.timestamp == datetime(2024, 5, 1, 6)
    assert len(workspace.get_dashboard(project.id).panels) == 3


def test_gauges_are_written_and_re_exported(outcome, tmp_path: Path) -> None:
    out, home = outcome
    folder = metrics_url(Settings.resolve(home))
    assert folder == str(home.metrics_dir)  # the home by default: node_exporter can read it
    assert out.metrics_url == f"{folder}/drift-{MODEL}.prom"
    other = write_drift_metrics(out.result, folder, model="other", version="1")
    assert other == f"{folder}/drift-other.prom"
    registry = CollectorRegistry()
    registry.register(TextfileCollector(folder))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    detected = {s.labels["model"]: s.value for s in families["tidemill_drift_detected"].samples}
    assert detected == {MODEL: 1.0, "other": 1.0}
    coverage = families["tidemill_interval_coverage"].samples
    assert {s.labels["variant"] for s in coverage} == {"champion"} and coverage[0].value < 0.8
    scores = {
        s.labels["column"]
        for s in families["tidemill_drift_score"].samples
        if s.labels["model"] == MODEL
    }
    assert scores == {"y", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "prediction"}
    assert families["tidemill_drift_share"].samples[0].value == pytest.approx(4 / 7)
    assert "tidemill_live_abs_error" in families and "tidemill_validation_mae" in families
    empty = CollectorRegistry()
    empty.register(TextfileCollector(tmp_path / "absent"))
    assert [f.name for f in text_string_to_metric_families(generate_latest(empty).decode())] \
        == ["tidemill_job_metrics_read_failures"]


def _families(collector: TextfileCollector) -> dict[str, list]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_drift_state_lives_in_an_s3_store(
    windows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an ``s3://`` artifact store a drift check keeps nothing in its home: reports, the
    Evidently workspace (a second check adds to the same project) and the gauges are objects
    in the bucket; the control API's collector reads the gauges from there, and while S3 is
    down it serves the last read and counts the failed reads."""
    reference, current = windows
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking).create_experiment(
        MONITORING_EXPERIMENT, artifact_location=(tmp_path / "mlartifacts").as_uri())
    with seaweedfs(tmp_path / "s3") as s3:
        s3.make_bucket("drift")
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("TIDEMILL_ARTIFACT_STORE_URL", "s3://drift/store")
        home = TidemillHome.resolve(tmp_path / "pod-home")
        outs = [
            run_drift_check(reference, shifted(current, reference, ["y", "HUFL"], 2.0),
                            predictions_for(current, noise=1.0, half_width=0.3), home=home,
                            model=MODEL, version=version, tracking_uri=tracking,
                            now=datetime(2024, 5, 1, hour, tzinfo=UTC))
            for hour, version in ((6, "3"), (7, "4"))
        ]
        assert list(home.root.rglob("*")) == []  # the pod's home stays empty
        settings = Settings.resolve(home)
        assert outs[1].report_dir == f"s3://drift/store/reports/{MODEL}/20240501T070000Z"
        assert outs[1].metrics_url == f"s3://drift/store/metrics/drift-{MODEL}.prom"
        assert "decision.json" in artifact_store.list_files(outs[1].report_dir)
        with artifact_store.local_copy(workspace_url(settings)) as copy:
            workspace = Workspace(str(copy))
            [project] = workspace.search_project(MODEL)
            runs = {str(r) for r in workspace.list_runs(project.id)}
            added = {r for out in outs for r in out.workspace_runs.values()}
            assert runs == added and len(runs) == 6
            assert len(workspace.get_dashboard(project.id).panels) == 3

        collector = TextfileCollector(settings.job_metrics_url)
        live = _families(collector)
        assert [(s.labels["version"], s.value) for s in live["tidemill_drift_detected"]] == [
            ("4", 1.0)]
        assert live["tidemill_job_metrics_read_failures"][0].value == 0
        s3.stop()
        started = time.monotonic()
        down = _families(collector)
        took = time.monotonic() - started
        assert down["tidemill_drift_detected"] == live["tidemill_drift_detected"]
        assert down["tidemill_job_metrics_read_failures"][0].value == 1
        print(f"[drift] scrape with the store down: {took:.1f} s (last read served)")


def test_champion_lineage_finds_the_training_snapshot(windows, tmp_path: Path) -> None:
    reference, _ = windows
    home = TidemillHome.resolve(tmp_path)
    snap = write_snapshot(reference, str(home.runs_dir))
    client = MlflowClient(home.mlflow_uri, registry_uri=home.mlflow_uri)
    exp_id = client.create_experiment("train", artifact_location=home.artifacts_dir.as_uri())
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "val_mae", 0.42)
    client.create_registered_model(MODEL)
    mv = client.create_model_version(
        MODEL,
        source=f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags={"tidemill.snapshot_url": snap.url, "tidemill.snapshot_sha256": snap.sha256},
    )
    client.set_registered_model_alias(MODEL, "champion", mv.version)
    lineage = champion_lineage(home.mlflow_uri, MODEL)
    assert (lineage.version, lineage.val_mae, lineage.snapshot_url) == ("1", 0.42, snap.url)
    pd.testing.assert_frame_equal(lineage.load_reference(), reference)
    # a version registered before snapshots had URLs names a local path: still found
    old = client.create_model_version(
        MODEL,
        source=f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags={"tidemill.snapshot_path": snap.url, "tidemill.snapshot_sha256": snap.sha256},
    )
    client.set_registered_model_alias(MODEL, "champion", old.version)
    assert champion_lineage(home.mlflow_uri, MODEL).snapshot_url == snap.url
