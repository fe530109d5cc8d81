"""Render the Tidemill chart with helm and validate the manifests (Kubernetes and CRD schemas)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tidemill"
CRD_DIR = Path(__file__).resolve().parent / "crds"
NAMESPACE = "tidemill"
RELEASE = "tidemill"
# Oldest supported (Chart.yaml kubeVersion) and newest version kubernetes-validate ships.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
CRD_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("ray.io/v1", "RayCluster"): "ray.io_rayclusters.yaml",
}
SERVING_RUNTIME = ("serving.kserve.io/v1alpha1", "ServingRuntime")


def helm_binary() -> str:
    """Path of helm, building the pinned version with scripts/install-helm.sh if needed."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "install-helm.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def helm(helm_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm; the caller checks returncode."""
    return subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=120)


def template_args(values_files: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[str]:
    """Arguments of `helm template` for the chart with the given values files and --set pairs."""
    args = [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSIONS[0],
    ]
    for f in values_files:
        args += ["-f", str(CHART / f)]
    for s in sets:
        args += ["--set", s]
    return args


def render(
    helm_bin: str, values_files: tuple[str, ...] = (), sets: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Rendered manifests (non-empty YAML documents) of `helm template`."""
    proc = helm(helm_bin, *template_args(values_files, sets))
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Documents of a kind (and name)."""
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def kind_key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["apiVersion"], doc["kind"]


def validate_core(doc: dict[str, Any]) -> None:
    """Strict validation against the Kubernetes OpenAPI schemas of every KUBE_VERSIONS."""
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """openAPIV3Schema of the CRD version serving apiVersion/kind."""
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return _python_patterns(entry["schema"]["openAPIV3Schema"])


def _python_patterns(node: Any) -> Any:
    """Move Go's inline flags (`^(?i)...`) to the front, where Python's `re` requires them."""
    if isinstance(node, dict):
        out = {k: _python_patterns(v) for k, v in node.items()}
        pattern = node.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern[1:]:
            out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
        return out
    if isinstance(node, list):
        return [_python_patterns(v) for v in node]
    return node


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of keys the schema does not declare (a CRD would prune them silently)."""
    found: list[str] = []
    if isinstance(obj, dict) and schema.get("type", "object") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            return found  # free-form object (x-kubernetes-preserve-unknown-fields / metadata)
        for key, value in obj.items():
            if props is not None and key in props:
                found += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            else:
                found.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def validate_crd(doc: dict[str, Any]) -> None:
    """jsonschema validation plus the unknown-field check against the copied CRD schema."""
    schema = crd_schema(*kind_key(doc))
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    unknown = unknown_fields(doc, schema)
    assert not unknown, f"{doc['kind']}/{doc['metadata']['name']}: unknown fields {unknown}"


def validate_serving_runtime(doc: dict[str, Any]) -> None:
    """No ServingRuntime CRD offline: check its shape and its containers as a core/v1 Pod."""
    spec = doc["spec"]
    assert set(spec) <= {
        "supportedModelFormats",
        "protocolVersions",
        "containers",
        "annotations",
        "multiModel",
        "disabled",
    }, set(spec)
    assert spec["supportedModelFormats"] and spec["containers"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "servingruntime-check"},
        "spec": {"containers": spec["containers"]},
    }
    validate_core(pod)


def validate(doc: dict[str, Any]) -> None:
    """Validate one rendered document with the schema its kind needs."""
    key = kind_key(doc)
    if key in CRD_FILES:
        validate_crd(doc)
    elif key == SERVING_RUNTIME:
        validate_serving_runtime(doc)
    else:
        validate_core(doc)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: return `target` with `patch` applied (inputs untouched)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def leaf_paths(obj: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths to the values a merge patch sets or deletes (lists are replaced whole)."""
    if isinstance(obj, dict) and obj:
        paths: set[tuple[str, ...]] = set()
        for key, value in obj.items():
            paths |= leaf_paths(value, (*prefix, key))
        return paths
    return {prefix}


def has_path(obj: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False
        obj = obj[key]
    return True
