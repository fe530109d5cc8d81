"""serving/split_kubernetes.py patches exactly the InferenceService fields the chart renders."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serving import split_kubernetes as sk
from tests.k8s import manifests
from tests.k8s.conftest import CHALLENGER_URI

CHAMPION_URI = "s3://tidemill/mlflow/1/champion/artifacts/model"
NEW_URI = "s3://tidemill/mlflow/1/new-run/artifacts/model"
MODES = {
    "serverless": ("default", "serverless-challenger"),
    "standard": ("standard", "standard-challenger"),
}


def isvc(rendered: dict[str, list[dict[str, Any]]], profile: str) -> dict[str, Any]:
    (doc,) = manifests.find(rendered[profile], "InferenceService")
    return doc


def patch_for(
    mode: str, base: dict[str, Any], percent: int, champion: str, challenger: str | None
) -> dict[str, Any]:
    return sk.split_patch(
        mode, percent, champion, challenger, predictor_template=base["spec"]["predictor"]
    )


SPLITS = [
    (20, CHAMPION_URI, CHALLENGER_URI),
    (0, CHAMPION_URI, NEW_URI),
    (100, CHAMPION_URI, NEW_URI),
    (0, CHAMPION_URI, None),
    (0, CHALLENGER_URI, None),
]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(("percent", "champion", "challenger"), SPLITS)
def test_patch_touches_rendered_fields_and_stays_valid(
    rendered: dict[str, list[dict[str, Any]]],
    mode: str,
    percent: int,
    champion: str,
    challenger: str | None,
) -> None:
    base_profile, full_profile = MODES[mode]
    full = isvc(rendered, full_profile)  # the chart with every split field rendered
    for start in (isvc(rendered, base_profile), full):
        patch = patch_for(mode, start, percent, champion, challenger)
        for path in manifests.leaf_paths(patch):
            assert manifests.has_path(full, path), f"{mode}: patch path {path} not rendered"
        patched = manifests.merge_patch(start, patch)
        manifests.validate_crd(patched)
        assert sk.read_split(mode, patched) == {
            "mode": mode,
            "champion_storage_uri": champion,
            "challenger_storage_uri": challenger,
            "challenger_percent": percent,
        }


@pytest.mark.parametrize("mode", list(MODES))
def test_patch_reproduces_chart_rendering(
    rendered: dict[str, list[dict[str, Any]]], mode: str
) -> None:
    """Adding the chart's challenger by patch gives exactly what the chart renders for it."""
    base_profile, full_profile = MODES[mode]
    base, full = isvc(rendered, base_profile), isvc(rendered, full_profile)
    patched = manifests.merge_patch(base, patch_for(mode, base, 20, CHAMPION_URI, CHALLENGER_URI))
    assert patched["spec"] == full["spec"]
    assert patched["metadata"]["annotations"] == full["metadata"]["annotations"]
    back = manifests.merge_patch(full, patch_for(mode, full, 0, CHAMPION_URI, None))
    assert back["spec"] == base["spec"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("canary", 10, CHAMPION_URI, NEW_URI), "mode"),
        (("standard", 101, CHAMPION_URI, NEW_URI), "0..100"),
        (("serverless", -1, CHAMPION_URI, NEW_URI), "0..100"),
        (("serverless", 12.5, CHAMPION_URI, NEW_URI), "int"),
        (("serverless", True, CHAMPION_URI, NEW_URI), "int"),
        (("serverless", 10, CHAMPION_URI, None), "without a challenger"),
        (("serverless", 10, "", NEW_URI), "champion_storage_uri"),
        (("serverless", 10, CHAMPION_URI, ""), "challenger_storage_uri"),
        (("serverless", 10, CHAMPION_URI, CHAMPION_URI), "differ"),
        (("standard", 10, CHAMPION_URI, NEW_URI), "predictor_template"),
    ],
)
def test_split_patch_rejects_bad_input(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sk.split_patch(*args)


class FakeCustomObjectsApi:
    """Captures CustomObjectsApi calls; serves one stored object (kubernetes can't run here)."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = copy.deepcopy(obj)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_namespaced_custom_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get", kwargs))
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("patch", kwargs))
        self.obj = manifests.merge_patch(self.obj, kwargs["body"])
        return copy.deepcopy(self.obj)


@pytest.mark.parametrize("mode", list(MODES))
def test_backend_get_and_apply(rendered: dict[str, list[dict[str, Any]]], mode: str) -> None:
    base_profile, _ = MODES[mode]
    base = isvc(rendered, base_profile)
    api = FakeCustomObjectsApi(base)
    backend = sk.KubernetesSplitBackend(
        manifests.NAMESPACE, base["metadata"]["name"], mode, api=api
    )
    assert backend.get() == {
        "mode": mode,
        "champion_storage_uri": CHAMPION_URI,
        "challenger_storage_uri": None,
        "challenger_percent": 0,
    }
    result = backend.apply(30, CHAMPION_URI, NEW_URI)
    patch_calls = [kw for name, kw in api.calls if name == "patch"]
    assert len(patch_calls) == 1
    call = patch_calls[0]
    assert {k: call[k] for k in ("group", "version", "namespace", "plural", "name")} == {
        "group": "serving.kserve.io",
        "version": "v1beta1",
        "namespace": manifests.NAMESPACE,
        "plural": "inferenceservices",
        "name": "tidemill-forecaster",
    }
    assert call["_content_type"] == "application/merge-patch+json"
    assert call["body"] == sk.split_patch(
        mode, 30, CHAMPION_URI, NEW_URI, predictor_template=base["spec"]["predictor"]
    )
    manifests.validate_crd(result)
    assert backend.get()["challenger_percent"] == 30
    backend.apply(0, NEW_URI, None)  # promote the challenger
    assert backend.get() == {
        "mode": mode,
        "champion_storage_uri": NEW_URI,
        "challenger_storage_uri": None,
        "challenger_percent": 0,
    }
    manifests.validate_crd(api.obj)


def test_backend_rejects_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        sk.KubernetesSplitBackend("ns", "isvc", "raw", api=object())


def test_module_imports_no_kserve_or_airflow() -> None:
    source = (manifests.ROOT / "serving" / "split_kubernetes.py").read_text()
    assert "import kserve" not in source and "airflow" not in source
    assert "\nimport kubernetes" not in source and "\nfrom kubernetes" not in source
