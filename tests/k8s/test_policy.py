"""Policy scans: checkov on the rendered manifests and the Dockerfiles, hadolint on Dockerfiles.

checkov runs offline (--skip-download), so it reports no severities: every failed check must be
listed in ACCEPTED with its reason, scoped to the resources it applies to.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.k8s import manifests
from tests.k8s.conftest import PROFILES

TOOLS = manifests.ROOT / ".venv" / "k8s-tools" / "bin"
DOCKERFILES = sorted((manifests.ROOT / "docker").glob("*/Dockerfile"))

# (check id, resource or file suffix) -> reason. Resources are checkov's "<Kind>.<ns>.<name>".
DIGEST_REASON = (
    "Images are pinned by tag; the digest is only known once the release images are built, so "
    "production sets <component>.image.digest (supported by the chart)."
)
ACCEPTED: dict[tuple[str, str], str] = {
    **{
        ("CKV_K8S_43", f"{kind}.tidemill.tidemill-{name}"): DIGEST_REASON
        for kind, name in (
            ("Deployment", "mlflow"),
            ("Deployment", "control-api"),
            ("Deployment", "platform-api"),
            ("Deployment", "feature-server"),
            ("StatefulSet", "postgresql"),
        )
    },
    ("CKV_K8S_35", "Deployment.tidemill.tidemill-mlflow"): (
        "MLflow and boto3 read the backend-store URL and S3 credentials from environment "
        "variables (MLFLOW_BACKEND_STORE_URI, AWS_*); they take no file equivalent."
    ),
    ("CKV_K8S_35", "Deployment.tidemill.tidemill-control-api"): (
        "The control API's runtime contract reads TIDEMILL_CONTROL_TOKEN and "
        "TIDEMILL_PREDICTION_LOG_URL from the environment."
    ),
    ("CKV_K8S_35", "Deployment.tidemill.tidemill-platform-api"): (
        "The platform API reads its token, database URL, S3 credentials and Airflow password "
        "from the environment (pipelines.settings, serving.platform_api.settings)."
    ),
    ("CKV_K8S_35", "Deployment.tidemill.tidemill-feature-server"): (
        "Feast's feature server reads its registry and online store URLs from the environment "
        "(TIDEMILL_FEAST_REGISTRY_URL, TIDEMILL_FEAST_ONLINE_URL: pipelines.feature_store)."
    ),
    ("CKV_K8S_38", "Deployment.tidemill.tidemill-platform-api"): (
        "deploy/promote/rollback patch the InferenceService with the control API's "
        "Role-scoped ServiceAccount, so the token is mounted."
    ),
    ("CKV_K8S_38", "Deployment.tidemill.tidemill-control-api"): (
        "The control API is the one pod that calls the Kubernetes API (get/patch of its "
        "InferenceService, Role-scoped), so it needs its ServiceAccount token."
    ),
    **{
        ("CKV_DOCKER_7", f"/{name}/Dockerfile"): (
            "The base is a build argument (FROM ${PYTHON_IMAGE} / ${AIRFLOW_IMAGE}) whose default "
            "checkov does not resolve; test_dockerfiles_run_non_root_from_pinned_bases checks "
            "that the defaults are pinned tags. The argument lets a release pin the base by "
            "digest and scripts/images.sh pass its local Debian stand-ins."
        )
        for name in ("airflow", "control-api", "mlflow", "predictor")
    },
    ("CKV_DOCKER_2", "/airflow/Dockerfile"): (
        "One Airflow image runs the scheduler, API server, DAG processor, triggerer and "
        "KubernetesExecutor task pods; each needs a different check, which the Airflow chart "
        "defines as Kubernetes probes."
    ),
}


def checkov(target: Path, framework: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [
            str(TOOLS / "checkov"),
            "-d",
            str(target),
            "--framework",
            framework,
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports), reports
    assert sum(r["summary"]["passed"] for r in reports) > 0
    return [f for r in reports for f in r["results"]["failed_checks"]]


def unaccepted(failed: list[dict[str, Any]]) -> list[str]:
    out = []
    for f in failed:
        ids = {(f["check_id"], f["resource"]), (f["check_id"], f["file_path"])}
        if not ids & ACCEPTED.keys():
            out.append(f"{f['check_id']} {f['resource']} {f['file_path']}: {f['check_name']}")
    return out


@pytest.fixture(scope="module")
def setup_tools() -> None:
    subprocess.run(
        [str(manifests.ROOT / "scripts" / "setup.sh"), "k8s-tools"],
        check=True,
        capture_output=True,
        timeout=600,
    )


def test_checkov_rendered_manifests(setup_tools: None, helm_bin: str, tmp_path: Path) -> None:
    for name in ("default", "production", "standard-challenger"):
        files, sets = PROFILES[name]
        proc = manifests.helm(helm_bin, *manifests.template_args(files, sets))
        assert proc.returncode == 0, proc.stderr
        (tmp_path / f"{name}.yaml").write_text(proc.stdout)
    failed = checkov(tmp_path, "kubernetes")
    assert not unaccepted(failed), unaccepted(failed)


def test_checkov_dockerfiles(setup_tools: None) -> None:
    failed = checkov(manifests.ROOT / "docker", "dockerfile")
    assert not unaccepted(failed), unaccepted(failed)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(setup_tools: None, dockerfile: Path) -> None:
    proc = subprocess.run(
        [str(TOOLS / "hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def base_images(lines: list[str]) -> list[str]:
    """The FROM images, with the base build arguments (``FROM ${PYTHON_IMAGE}``, which
    scripts/images.sh overrides with local stand-ins) replaced by their defaults; a FROM naming
    an earlier stage (``FROM deps``) is that stage, not an image, and is left out."""
    defaults = dict(ln.split()[1].split("=", 1) for ln in lines
                    if ln.startswith("ARG ") and "=" in ln)
    froms = [ln.split() for ln in lines if ln.startswith("FROM ")]
    stages = {words[3] for words in froms if len(words) == 4 and words[2].upper() == "AS"}
    return [defaults.get(image.strip("${}"), image) if image.startswith("$") else image
            for image in (words[1] for words in froms) if image not in stages]


def test_dockerfiles_run_non_root_from_pinned_bases() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"airflow", "control-api", "mlflow", "predictor"}
    for dockerfile in DOCKERFILES:
        lines = dockerfile.read_text().splitlines()
        froms = base_images(lines)
        assert froms, f"{dockerfile}: no base image"
        assert all(":" in image and not image.endswith(":latest") for image in froms), froms
        user = [ln for ln in lines if ln.startswith("USER ")][-1].split()[1]
        assert user.split(":")[0] not in {"root", "0"}, dockerfile


SOURCES = ("pyproject.toml", "pipelines", "serving", "monitoring", "tidemill", "dags", "configs")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_keep_dependencies_in_a_layer_of_their_own(dockerfile: Path) -> None:
    """The locked environment is installed from the lock alone, before any source is copied, and
    the final stage builds on it instead of copying it (podman re-copies and re-hashes a copied
    multi-GB environment on every rebuild): a code change then rebuilds a small layer only."""
    lines = dockerfile.read_text().splitlines()
    lock = next(i for i, ln in enumerate(lines)
                if ln.startswith("COPY ") and ("locks/" in ln or "requirements.txt" in ln))
    install = next(i for i, ln in enumerate(lines) if i > lock and "uv pip " in ln)
    sources = [i for i, ln in enumerate(lines)
               if ln.startswith("COPY ") and ln.split()[-2].startswith(SOURCES)]
    assert all(i > install for i in sources), (dockerfile, lock, install, sources)
    copied = [ln for ln in lines if ln.startswith("COPY --from=")
              and ln.split()[-2] in {"/opt/venv", "/home/airflow/.local"}]
    assert not copied, copied
