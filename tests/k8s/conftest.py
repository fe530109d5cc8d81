"""Session fixtures: the pinned helm binary and the chart rendered under the tested profiles."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s import manifests

CHALLENGER_URI = "s3://tidemill/mlflow/1/challenger-run/artifacts/model"
CLASSIFIER_URI = "s3://tidemill/mlflow/2/classifier-run/artifacts/model"

# name -> (values files, --set pairs)
PROFILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    "production": (("values-production.yaml",), ()),
    "serverless-challenger": (
        (),
        (
            f"forecaster.challenger.storageUri={CHALLENGER_URI}",
            "forecaster.challenger.trafficPercent=20",
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
        ),
    ),
    "standard": ((), ("forecaster.deploymentMode=standard", "forecaster.scaleMetric=cpu")),
    # two registered models side by side, each its own InferenceService and split
    "two-models": (
        (),
        (
            "forecaster.registeredModel=etth1-forecaster",
            f"forecaster.challenger.storageUri={CHALLENGER_URI}",
            "forecaster.challenger.trafficPercent=20",
            "models[0].name=tidemill-classifier",
            "models[0].registeredModel=ai4i-failure",
            f"models[0].champion.storageUri={CLASSIFIER_URI}",
            f"models[0].challenger.storageUri={CLASSIFIER_URI}-v2",
            "models[0].challenger.trafficPercent=35",
            "models[1].name=tidemill-regressor",
            "models[1].registeredModel=diabetes-regressor",
            f"models[1].champion.storageUri={CLASSIFIER_URI}-reg",
            "metrics.serviceMonitor.enabled=true",
        ),
    ),
    "standard-challenger": (
        (),
        (
            "forecaster.deploymentMode=standard",
            "forecaster.scaleMetric=cpu",
            f"forecaster.challenger.storageUri={CHALLENGER_URI}",
            "forecaster.challenger.trafficPercent=20",
            "metrics.serviceMonitor.enabled=true",
        ),
    ),
}


@pytest.fixture(scope="session")
def helm_bin() -> str:
    """The pinned helm (scripts/install-helm.sh builds it on first use)."""
    return manifests.helm_binary()


@pytest.fixture(scope="session")
def rendered(helm_bin: str) -> dict[str, list[dict[str, Any]]]:
    """Manifests of every profile in PROFILES."""
    return {
        name: manifests.render(helm_bin, files, sets) for name, (files, sets) in PROFILES.items()
    }
