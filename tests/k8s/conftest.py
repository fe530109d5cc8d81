"""Session fixtures: the pinned helm binary and the chart rendered under the tested profiles."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s import manifests

CHALLENGER_URI = "s3://tidemill/mlflow/1/challenger-run/artifacts/model"

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
