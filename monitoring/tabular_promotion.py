"""The tabular_promotion job: which registration to judge, the gate, and the registry +
serving change.

Called by the ``tabular_promotion`` DAG, which runs on the tabular model Asset: the Asset
event's extra (``name``, ``version``, ``tracking_uri``, written by ``tabular_training``'s
``register``) says which registered model and version to judge, so several registered models
in one install are each promoted on their own. Decisions and the tags that record them are
the forecasting promotion's (``monitoring.promotion_job``); every alias and split change goes
through ``serving.split.SplitControl``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mlflow import MlflowClient

from monitoring.promotion_job import PROMOTED_AT_TAG
from pipelines.home import TidemillHome
from pipelines.settings import Settings
from pipelines.tabular.promotion import gate
from serving.split import SplitControl, backend_from_env


def _say(msg: str) -> None:
    print(f"[tidemill] {msg}", flush=True)


def registration(
    events: list[dict[str, Any]],
    home: TidemillHome,
    model_name: str | None = None,
    version: str | None = None,
) -> dict[str, str]:
    """``name``, ``version`` and ``tracking_uri`` to judge: the latest triggering Asset event's
    extra, else the trigger form's ``model_name`` (and ``version``, default its challenger)
    on the home's MLflow store."""
    if events:
        extra = events[-1]
        missing = [k for k in ("name", "version", "tracking_uri") if not extra.get(k)]
        if missing:
            raise ValueError(
                f"the tabular model Asset event lacks {missing} in its extra ({sorted(extra)})"
            )
        return {k: str(extra[k]) for k in ("name", "version", "tracking_uri")}
    if not model_name:
        raise ValueError(
            "no triggering Asset event and no model_name in the trigger form: "
            "name the registered model to judge"
        )
    uri = Settings.resolve(home).mlflow_tracking_uri
    if not version:
        client = MlflowClient(uri, registry_uri=uri)
        version = (client.get_registered_model(model_name).aliases or {}).get("challenger")
        if version is None:
            raise ValueError(f"{model_name!r} has no challenger; name a version")
    return {"name": model_name, "version": str(version), "tracking_uri": uri}


def evaluate_registration(
    target: dict[str, str],
    home: TidemillHome,
    alpha: float = 0.05,
    min_samples: int = 30,
    bootstrap: bool = False,
    canary_percent: int = 10,
) -> dict[str, Any]:
    """Put the challenger into serving at ``canary_percent`` and run the gate."""
    name, version, uri = target["name"], target["version"], target["tracking_uri"]
    result = gate(uri, name, version, alpha, min_samples, bootstrap)
    if result["challenger"] is not None:
        control = SplitControl(MlflowClient(uri, registry_uri=uri), name,
                               backend_from_env(home, name))
        control.sync(canary_percent)
    _say(
        f"tabular_promotion: {name} v{version} vs champion v{result['champion']}: "
        f"{result['decision']} - {result['reason']}"
    )
    return {**result, "tracking_uri": uri}


def apply_decision(evaluation: dict[str, Any], home: TidemillHome, actor: str) -> dict[str, Any]:
    """Promote, keep or archive the challenger, recording who, why and the evidence as the
    forecasting promotion's tags."""
    name, challenger = evaluation["model"], evaluation["challenger"]
    if not challenger:
        return {"action": "none", "model": name, "reason": evaluation["reason"]}
    uri = evaluation["tracking_uri"]
    control = SplitControl(MlflowClient(uri, registry_uri=uri), name, backend_from_env(home, name))
    evidence = {k: v for k, v in evaluation.items() if k not in ("reason", "tracking_uri")}
    tags = {
        "tidemill.promotion_decided_by": actor,
        "tidemill.promotion_reason": evaluation["reason"][:4900],
        "tidemill.promotion_evidence": json.dumps(evidence)[:4900],
    }
    if evaluation["decision"] == "promote":
        control.promote()
        tags[PROMOTED_AT_TAG] = str(int(time.time()))
        action = "promoted"
    elif evaluation["decision"] == "keep" and (evaluation.get("mean_loss_diff") or 0.0) < 0:
        control.retire_challenger()
        action = "archived"
    else:
        action = "kept as challenger"
    for key, value in tags.items():
        control.client.set_model_version_tag(name, challenger, key, value)
    _say(f"tabular_promotion: {name} version {challenger} {action}")
    return {"action": action, "model": name, "version": challenger, "reason": evaluation["reason"]}
