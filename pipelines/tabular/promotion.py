"""The promotion gate of a tabular model: the registered champion and challenger (aliases)
predict the test split of the run that trained the challenger (named by its version's tags),
and the paired test fit for the task (``pipelines.tabular.significance``) says ``promote``,
``keep`` or ``insufficient-data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines import artifact_store, registry
from pipelines.promotion import _finite
from pipelines.tabular.bundle import TabularBundle
from pipelines.tabular.data import SPLIT_COLUMN
from pipelines.tabular.significance import compare_on_test
from pipelines.tabular.workflow import PREPARED_TAG, run_config

CONFIG_TAG = "tidemill.config"


def load_version(tracking_uri: str, name: str, version: str) -> TabularBundle:
    """The tabular bundle of a registered version (``artifacts/<key>/tabular.json``)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}",
                                                     tracking_uri=tracking_uri))
    found = sorted(local.glob("artifacts/*/tabular.json"))
    if not found:
        raise FileNotFoundError(f"{name} version {version} holds no tabular bundle")
    return TabularBundle.load(found[0].parent)


def gate(tracking_uri: str, name: str, version: str, alpha: float = 0.05,
         min_samples: int = 30, bootstrap: bool = False) -> dict[str, Any]:
    """Compare the champion of ``name`` with its challenger ``version`` (the one whose
    registration asked for this) on the test rows of the run that trained ``version``.

    The result: ``model``, ``champion``, ``challenger`` (versions; ``challenger`` None when
    ``version`` is not the challenger any more: nothing to decide), ``task``, ``test_rows``
    and the test's fields (``decision``, ``reason``, ``p_value``, ``mean_loss_diff``, ...)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    aliases = client.get_registered_model(name).aliases or {}
    champion, challenger = (str(aliases.get(a) or "") or None
                            for a in (registry.CHAMPION, registry.CHALLENGER))
    head = {"model": name, "champion": champion, "challenger": str(version), "test_rows": 0}
    if challenger != str(version):
        return {**head, "challenger": None, "decision": "keep",
                "reason": f"version {version} of {name} is not the challenger (challenger: "
                          f"{challenger}, champion: {champion}): nothing to decide"}
    if champion is None or champion == challenger:
        return {**head, "challenger": None, "decision": "keep",
                "reason": f"version {version} of {name} is champion and challenger: nothing "
                          "to compare"}
    tags = client.get_model_version(name, version).tags
    missing = [t for t in (CONFIG_TAG, PREPARED_TAG) if not tags.get(t)]
    if missing:
        raise ValueError(f"{name} version {version} lacks tag(s) {missing}: its test split "
                         "cannot be found")
    cfg = run_config(tags[CONFIG_TAG])
    head["task"] = cfg.task
    if not cfg.labelled:
        return {**head, "decision": "insufficient-data",
                "reason": "no labels (target_column) to test the predictions against"}
    frame = artifact_store.read_parquet(tags[PREPARED_TAG])
    test = frame[frame[SPLIT_COLUMN] == "test"]
    answers = {}
    for alias, v in ((registry.CHAMPION, champion), (registry.CHALLENGER, challenger)):
        bundle = load_version(tracking_uri, name, v)
        answers[alias] = bundle.predict(test[bundle.features])
    result = compare_on_test(cfg.task, test[cfg.data.target_column].to_numpy(),
                             answers[registry.CHAMPION], answers[registry.CHALLENGER],
                             bootstrap=bootstrap, alpha=alpha, min_samples=min_samples)
    return {**head, "test_rows": len(test), **_finite(result.as_dict())}
