"""The promotion gate of a tabular model: champion and challenger (registry aliases) predict
the test split of a training run, and the paired test fit for the task
(``pipelines.tabular.significance``) says ``promote``, ``keep`` or ``insufficient-data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines import artifact_store, registry
from pipelines.home import TidemillHome
from pipelines.tabular.bundle import TabularBundle
from pipelines.tabular.data import SPLIT_COLUMN
from pipelines.tabular.significance import compare_on_test
from pipelines.tabular.workflow import run_config


def load_version(tracking_uri: str, name: str, version: str) -> TabularBundle:
    """The tabular bundle of a registered version (``artifacts/<key>/tabular.json``)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}",
                                                     tracking_uri=tracking_uri))
    found = sorted(local.glob("artifacts/*/tabular.json"))
    if not found:
        raise FileNotFoundError(f"{name} version {version} holds no tabular bundle")
    return TabularBundle.load(found[0].parent)


def gate(prepared: dict[str, Any], home: TidemillHome, alpha: float = 0.05,
         min_samples: int = 30) -> dict[str, Any]:
    """Compare the registered champion and challenger on the test rows of ``prepared`` (a
    run's ``prepare`` output). The result: ``champion``, ``challenger`` (versions), ``test_rows``
    and the test's fields (``decision``, ``reason``, ``p_value``, ...)."""
    from mlflow import MlflowClient

    cfg = run_config(prepared["config"])
    uri = registry.tracking_uri(cfg, home)
    client = MlflowClient(uri, registry_uri=uri)
    name = cfg.mlflow.registered_model_name
    versions = {alias: str(client.get_model_version_by_alias(name, alias).version)
                for alias in (registry.CHAMPION, registry.CHALLENGER)}
    head = {"model": name, "champion": versions[registry.CHAMPION],
            "challenger": versions[registry.CHALLENGER]}
    if head["champion"] == head["challenger"]:
        return {**head, "test_rows": 0, "decision": "keep",
                "reason": f"version {head['champion']} is champion and challenger: nothing "
                          "to compare"}
    if not cfg.labelled:
        return {**head, "test_rows": 0, "decision": "insufficient-data",
                "reason": "no labels (target_column) to test the predictions against"}
    frame = artifact_store.read_parquet(prepared["prepared"])
    test = frame[frame[SPLIT_COLUMN] == "test"]
    features = test[prepared["numeric"] + prepared["categorical"]]
    predictions = {alias: load_version(uri, name, version).predict(features)["prediction"]
                   for alias, version in versions.items()}
    result = compare_on_test(cfg.task, test[cfg.data.target_column].to_numpy(),
                             predictions[registry.CHAMPION].to_numpy(),
                             predictions[registry.CHALLENGER].to_numpy(), alpha=alpha,
                             min_samples=min_samples)
    return {**head, "test_rows": len(test), **result.as_dict()}
