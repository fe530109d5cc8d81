"""Champion/challenger split of the Tidemill InferenceService through the Kubernetes API.

The patches touch exactly the fields ``charts/tidemill/templates/inferenceservice.yaml`` renders
(tests/k8s checks this against the rendered manifest and the InferenceService CRD schema).

How champion and challenger map onto KServe:

* **serverless** (Knative): KServe's canary is the *latest ready revision*. With a challenger,
  ``spec.predictor.model.storageUri`` is set to the challenger, creating a new revision that gets
  ``spec.predictor.canaryTrafficPercent`` percent; the remainder stays on the previously rolled-out
  revision, which must be the champion (the state left by the last apply without a challenger).
  Without a challenger, ``storageUri`` is the champion at ``canaryTrafficPercent: 100`` - a
  promotion when the challenger's model is the new champion (no new revision), a rollback to a
  fresh champion revision otherwise. The spec alone cannot name the champion while a canary runs,
  so the champion URI is also kept in the ``tidemill.io/champion-storage-uri`` annotation.
* **standard** (RawDeployment): ``spec.predictor`` is the champion and ``spec.canary[0]``
  (``trafficPercent`` + a full ``predictor``, named ``challenger``) is the challenger; without a
  challenger ``spec.canary`` is removed. A JSON merge patch replaces lists whole, so the canary
  predictor is a copy of the champion predictor (``predictor_template``) with its own name and
  ``model.storageUri``.
"""

from __future__ import annotations

import copy
from typing import Any

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
MODES = ("serverless", "standard")
CHAMPION_ANNOTATION = "tidemill.io/champion-storage-uri"
CHALLENGER_NAME = "challenger"
VARIANT_ENV = "TIDEMILL_VARIANT"
MERGE_PATCH = "application/merge-patch+json"


def _check_inputs(
    mode: str,
    challenger_percent: int,
    champion_storage_uri: str,
    challenger_storage_uri: str | None,
) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(challenger_percent, bool) or not isinstance(challenger_percent, int):
        raise ValueError(f"challenger_percent must be an int, got {challenger_percent!r}")
    if not 0 <= challenger_percent <= 100:
        raise ValueError(f"challenger_percent must be within 0..100, got {challenger_percent}")
    if not champion_storage_uri:
        raise ValueError("champion_storage_uri must be a non-empty model URI")
    if challenger_storage_uri is None:
        if challenger_percent != 0:
            raise ValueError(
                f"challenger_percent must be 0 without a challenger, got {challenger_percent}"
            )
    elif not challenger_storage_uri:
        raise ValueError("challenger_storage_uri must be None or a non-empty model URI")
    elif challenger_storage_uri == champion_storage_uri:
        raise ValueError("challenger_storage_uri must differ from champion_storage_uri")


def _variant_env(predictor: dict[str, Any], challenger: bool) -> list[dict[str, Any]]:
    """The predictor's model env with ``TIDEMILL_VARIANT=challenger`` if it serves the
    challenger, without it otherwise (the predictor then says ``champion``). A merge patch
    replaces lists whole, so this is the full list."""
    env = [e for e in predictor.get("model", {}).get("env") or [] if e.get("name") != VARIANT_ENV]
    return [*env, {"name": VARIANT_ENV, "value": CHALLENGER_NAME}] if challenger else env


def split_patch(
    mode: str,
    challenger_percent: int,
    champion_storage_uri: str,
    challenger_storage_uri: str | None,
    predictor_template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the JSON merge patch (RFC 7386) for the InferenceService.

    ``predictor_template`` is the live ``spec.predictor``: serverless mode needs it for the
    model env (``TIDEMILL_VARIANT``), standard mode to build the challenger's full predictor
    spec when there is a challenger.
    """
    _check_inputs(mode, challenger_percent, champion_storage_uri, challenger_storage_uri)
    patch: dict[str, Any] = {
        "metadata": {"annotations": {CHAMPION_ANNOTATION: champion_storage_uri}}
    }
    if mode == "serverless":
        if predictor_template is None:
            raise ValueError("serverless mode needs predictor_template")
        has_challenger = challenger_storage_uri is not None
        served = challenger_storage_uri if has_challenger else champion_storage_uri
        patch["spec"] = {
            "predictor": {
                "canaryTrafficPercent": challenger_percent if has_challenger else 100,
                "model": {
                    "storageUri": served,
                    "env": _variant_env(predictor_template, has_challenger),
                },
            }
        }
        return patch

    spec: dict[str, Any] = {"predictor": {"model": {"storageUri": champion_storage_uri}}}
    if challenger_storage_uri is None:
        spec["canary"] = None
    else:
        if predictor_template is None:
            raise ValueError("standard mode with a challenger needs predictor_template")
        challenger = copy.deepcopy(predictor_template)
        challenger.pop("canaryTrafficPercent", None)
        challenger["name"] = CHALLENGER_NAME
        challenger.setdefault("model", {})["storageUri"] = challenger_storage_uri
        challenger["model"]["env"] = _variant_env(challenger, True)
        spec["canary"] = [{"trafficPercent": challenger_percent, "predictor": challenger}]
    patch["spec"] = spec
    return patch


def read_split(mode: str, isvc: dict[str, Any]) -> dict[str, Any]:
    """Champion/challenger URIs and challenger percent of an InferenceService object."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    spec = isvc.get("spec", {})
    predictor = spec.get("predictor", {})
    served = predictor.get("model", {}).get("storageUri")
    annotations = isvc.get("metadata", {}).get("annotations") or {}
    if mode == "serverless":
        champion = annotations.get(CHAMPION_ANNOTATION, served)
        challenger = served if served != champion else None
        percent = int(predictor.get("canaryTrafficPercent", 100)) if challenger else 0
    else:
        champion = served
        canary = spec.get("canary") or []
        challenger = canary[0]["predictor"]["model"]["storageUri"] if canary else None
        percent = int(canary[0].get("trafficPercent", 0)) if canary else 0
    return {
        "mode": mode,
        "champion_storage_uri": champion,
        "challenger_storage_uri": challenger,
        "challenger_percent": percent,
    }


def _default_api() -> Any:
    """A CustomObjectsApi from the in-cluster config, falling back to ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


class KubernetesSplitBackend:
    """Reads and changes the split of one InferenceService (needs get/patch on it)."""

    def __init__(self, namespace: str, name: str, mode: str, api: Any | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.namespace = namespace
        self.name = name
        self.mode = mode
        self._api = api

    @property
    def api(self) -> Any:
        """The CustomObjectsApi, created on first use."""
        if self._api is None:
            self._api = _default_api()
        return self._api

    def _read(self) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(
            group=GROUP, version=VERSION, namespace=self.namespace, plural=PLURAL, name=self.name
        )

    def get(self) -> dict[str, Any]:
        """Current champion/challenger URIs and challenger percent of the live object."""
        return read_split(self.mode, self._read())

    def apply(
        self,
        challenger_percent: int,
        champion_storage_uri: str,
        challenger_storage_uri: str | None,
    ) -> dict[str, Any]:
        """Merge-patch the InferenceService to the given split; return the patched object."""
        _check_inputs(self.mode, challenger_percent, champion_storage_uri, challenger_storage_uri)
        template = None
        if self.mode == "serverless" or challenger_storage_uri is not None:
            template = self._read().get("spec", {}).get("predictor", {})
        body = split_patch(
            self.mode,
            challenger_percent,
            champion_storage_uri,
            challenger_storage_uri,
            predictor_template=template,
        )
        return self.api.patch_namespaced_custom_object(
            group=GROUP,
            version=VERSION,
            namespace=self.namespace,
            plural=PLURAL,
            name=self.name,
            body=body,
            _content_type=MERGE_PATCH,
        )
