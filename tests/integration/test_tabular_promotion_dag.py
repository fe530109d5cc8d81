"""The real tabular_promotion DAG (airflow dags test) on a real MLflow store with two
registered classifiers, each with a one-split decision tree as champion (version 1) and
LightGBM as challenger (version 2), trained on the same AI4I 2020 slice: the run judges the
model it names and moves that model's aliases and split only."""

from __future__ import annotations

import json

import yaml
from mlflow import MlflowClient

from pipelines import artifact_store
from pipelines.settings import Settings
from pipelines.tabular.workflow import run_pipeline
from tests.integration.test_tabular_training import small_config

from .conftest import run_dag

TRIGGERED, OTHER = "it-promo-triggered", "it-promo-other"


def _champion_and_challenger(tmp_path, home, name: str) -> None:
    path = small_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["algorithms"] = {"decision_tree": {"params": {"max_depth": 1}},
                          "lightgbm": {"params": {"n_estimators": 100}}}
    data["mlflow"] = {"experiment": name, "registered_model_name": name}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    for key, algorithm in (("stump", "decision_tree"), ("gbm", "lightgbm")):
        run_pipeline(path, home, run_key=f"{name}-{key}", algorithms=[algorithm], n_trials=1)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_promotes_the_named_model_only(airflow_home, tmp_path):
    client = MlflowClient(airflow_home.mlflow_uri, registry_uri=airflow_home.mlflow_uri)
    for name in (TRIGGERED, OTHER):
        _champion_and_challenger(tmp_path, airflow_home, name)
        assert _aliases(client, name) == {"champion": "1", "challenger": "2"}

    conf = {"model_name": TRIGGERED, "version": "2", "bootstrap": True}
    proc = run_dag(airflow_home, "tabular_promotion", json.dumps(conf))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert f"tabular_promotion: {TRIGGERED} version 2 promoted" in out

    assert _aliases(client, TRIGGERED) == {
        "champion": "2", "previous_champion": "1"}
    tags = client.get_model_version(TRIGGERED, "2").tags
    assert tags["tidemill.promotion_decided_by"].startswith("airflow:tabular_promotion:")
    assert "paired bootstrap of mean log-loss reduction" in tags["tidemill.promotion_reason"]
    evidence = json.loads(tags["tidemill.promotion_evidence"])
    assert (evidence["decision"], evidence["champion"], evidence["test_rows"]) == (
        "promote", "1", 800)
    assert evidence["p_value"] < 0.05 and evidence["mean_loss_diff"] > 0
    assert "tidemill.promoted_at" in tags

    # the triggered model's own split follows its aliases: v2 serves alone
    settings = Settings.resolve(airflow_home)
    split = json.loads(artifact_store.read_text(settings.split_file(TRIGGERED)))
    assert (split["champion_uri"], split["challenger_uri"]) == (
        f"models:/{TRIGGERED}/2", None)

    # the other registered model, just as promotable, was not touched: aliases, tags, split
    assert _aliases(client, OTHER) == {"champion": "1", "challenger": "2"}
    assert not artifact_store.exists(settings.split_file(OTHER))
    assert not any(k.startswith("tidemill.promot")
                   for k in client.get_model_version(OTHER, "2").tags)


def test_the_asset_event_names_the_model_to_judge(airflow_home):
    from monitoring.tabular_promotion import registration

    older = {"name": OTHER, "version": "1", "tracking_uri": "sqlite:///a.db", "task": "x"}
    latest = {"name": TRIGGERED, "version": "3", "tracking_uri": "sqlite:///b.db"}
    assert registration([older, latest], airflow_home, model_name=OTHER) == latest
    try:
        registration([{"name": TRIGGERED}], airflow_home)
    except ValueError as exc:
        assert "lacks ['version', 'tracking_uri']" in str(exc)
    else:
        raise AssertionError("an event without a version was accepted")
