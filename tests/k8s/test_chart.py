"""The Helm chart: lint, render, Kubernetes/CRD schema validity, security defaults, wiring."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s import manifests
from tests.k8s.conftest import PROFILES

ROOT = manifests.ROOT
CHART = manifests.CHART
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in WORKLOAD_KINDS
    ]


def predictors(isvc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = isvc["spec"]
    return [spec["predictor"], *(c["predictor"] for c in spec.get("canary", []))]


@pytest.mark.parametrize("values", [(), ("values-production.yaml",)], ids=["default", "prod"])
def test_helm_lint(helm_bin: str, values: tuple[str, ...]) -> None:
    args = [
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        manifests.NAMESPACE,
        "--kube-version",
        manifests.KUBE_VERSIONS[0],
    ]
    for f in values:
        args += ["-f", str(CHART / f)]
    proc = manifests.helm(helm_bin, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_manifest_validates(rendered: dict[str, list[dict[str, Any]]], profile: str) -> None:
    docs = rendered[profile]
    assert docs
    for doc in docs:
        assert doc["metadata"].get("namespace") == manifests.NAMESPACE, doc["metadata"]["name"]
        manifests.validate(doc)


def test_expected_resources(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered["default"]}
    for expected in [
        ("Deployment", "tidemill-mlflow"),
        ("Service", "tidemill-mlflow"),
        ("StatefulSet", "tidemill-postgresql"),
        ("Deployment", "tidemill-control-api"),
        ("Service", "tidemill-control-api"),
        ("Role", "tidemill-control-api"),
        ("RoleBinding", "tidemill-control-api"),
        ("ServiceAccount", "tidemill-control-api"),
        ("InferenceService", "tidemill-forecaster"),
        ("ServingRuntime", "tidemill-predictor"),
        ("ConfigMap", "tidemill-dashboard"),
        ("NetworkPolicy", "tidemill-mlflow"),
        ("Deployment", "tidemill-platform-api"),
        ("Service", "tidemill-platform-api"),
        ("NetworkPolicy", "tidemill-platform-api"),
        ("RayCluster", "tidemill-ray"),
        ("NetworkPolicy", "tidemill-ray"),
        ("Deployment", "tidemill-feature-server"),
        ("Service", "tidemill-feature-server"),
        ("NetworkPolicy", "tidemill-feature-server"),
    ]:
        assert expected in kinds
    assert not manifests.find(rendered["default"], "ServiceMonitor")
    prod = {d["kind"] for d in rendered["production"]}
    assert {"ServiceMonitor", "PrometheusRule"} <= prod
    assert "StatefulSet" not in prod and "Secret" not in prod  # external DB, existing Secrets


@pytest.mark.parametrize("profile", ["default", "production"])
def test_pod_security_and_resources(
    rendered: dict[str, list[dict[str, Any]]], profile: str
) -> None:
    docs = rendered[profile]
    for name, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"requests", "limits"} <= set(c["resources"]), name
            assert "readinessProbe" in c and "livenessProbe" in c, name
        expects_token = name in ("Deployment/tidemill-control-api",
                                 "Deployment/tidemill-platform-api")
        assert spec["automountServiceAccountToken"] is expects_token, name
    (isvc,) = manifests.find(docs, "InferenceService")
    for predictor in predictors(isvc):
        model = predictor["model"]
        assert model["securityContext"]["runAsNonRoot"] is True
        assert model["securityContext"]["readOnlyRootFilesystem"] is True
        assert model["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"requests", "limits"} <= set(model["resources"])
        assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_control_api_role_is_minimal(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    (role,) = manifests.find(docs, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": ["tidemill-forecaster"],
            "verbs": ["get", "patch"],
        }
    ]
    assert not manifests.find(docs, "ClusterRole")
    (binding,) = manifests.find(docs, "RoleBinding")
    assert binding["subjects"][0]["name"] == "tidemill-control-api"


@pytest.mark.parametrize("profile", ["default", "standard-challenger"])
def test_inferenceservice_wiring(rendered: dict[str, list[dict[str, Any]]], profile: str) -> None:
    docs = rendered[profile]
    (isvc,) = manifests.find(docs, "InferenceService")
    (svc,) = manifests.find(docs, "Service", "tidemill-control-api")
    (deploy,) = manifests.find(docs, "Deployment", "tidemill-control-api")
    (runtime,) = manifests.find(docs, "ServingRuntime")
    port = svc["spec"]["ports"][0]["port"]
    sink = f"http://tidemill-control-api.{manifests.NAMESPACE}.svc.cluster.local:{port}"
    for predictor in predictors(isvc):
        assert predictor["logger"] == {"mode": "all", "url": f"{sink}/prediction-log"}
        assert predictor["model"]["runtime"] == runtime["metadata"]["name"]
        assert predictor["minReplicas"] <= predictor["maxReplicas"]
        assert predictor["scaleTarget"] > 0
        env = {e["name"]: e.get("value") for e in predictor["model"]["env"]}
        variant = {"TIDEMILL_VARIANT": "challenger"} if predictor.get("name") == "challenger" \
            else {}
        feast = {k for k in env if k.startswith("TIDEMILL_FEAST_")}  # the feature server's
        assert {k: v for k, v in env.items() if k not in feast} == {
            "TIDEMILL_MODEL_NAME": "tidemill-forecaster",
            "TIDEMILL_MODEL_DIR": "/mnt/models",
            **variant,
        }
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TIDEMILL_ISVC_NAME"]["value"] == isvc["metadata"]["name"]
    assert env["TIDEMILL_K8S_NAMESPACE"]["value"] == manifests.NAMESPACE
    mode = "standard" if profile.startswith("standard") else "serverless"
    assert env["TIDEMILL_DEPLOYMENT_MODE"]["value"] == mode
    assert env["TIDEMILL_SPLIT_BACKEND"]["value"] == "kubernetes"
    assert "secretKeyRef" in env["TIDEMILL_CONTROL_TOKEN"]["valueFrom"]
    assert "secretKeyRef" in env["TIDEMILL_PREDICTION_LOG_URL"]["valueFrom"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == (
        f"http://tidemill-mlflow.{manifests.NAMESPACE}.svc.cluster.local:5000"
    )
    annotation = isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
    assert annotation == {"serverless": "Serverless", "standard": "RawDeployment"}[mode]


def test_each_registered_model_gets_its_own_inferenceservice(
    rendered: dict[str, list[dict[str, Any]]], helm_bin: str
) -> None:
    """``models`` adds one InferenceService per registered model with its own split; the
    control API may patch each and finds each model's through TIDEMILL_ISVC_NAMES."""
    docs = rendered["two-models"]
    isvcs = {d["metadata"]["name"]: d for d in manifests.find(docs, "InferenceService")}
    assert set(isvcs) == {"tidemill-forecaster", "tidemill-classifier", "tidemill-regressor"}

    def split(isvc: dict[str, Any]) -> tuple[str, int]:
        predictor = isvc["spec"]["predictor"]
        env = {e["name"]: e.get("value") for e in predictor["model"]["env"]}
        return env["TIDEMILL_MODEL_NAME"], predictor["canaryTrafficPercent"]

    assert split(isvcs["tidemill-forecaster"]) == ("tidemill-forecaster", 20)
    assert split(isvcs["tidemill-classifier"]) == ("tidemill-classifier", 35)
    assert split(isvcs["tidemill-regressor"]) == ("tidemill-regressor", 100)  # no challenger
    regressor = isvcs["tidemill-regressor"]
    assert regressor["spec"]["predictor"]["model"]["storageUri"] == (
        regressor["metadata"]["annotations"]["tidemill.io/champion-storage-uri"])
    assert isvcs["tidemill-classifier"]["spec"]["predictor"]["model"]["storageUri"].endswith(
        "-v2")
    (role,) = manifests.find(docs, "Role")
    assert sorted(role["rules"][0]["resourceNames"]) == sorted(isvcs)
    for name in ("tidemill-control-api", "tidemill-platform-api"):
        (deploy,) = manifests.find(docs, "Deployment", name)
        env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert json.loads(env["TIDEMILL_ISVC_NAMES"]["value"]) == {
            "etth1-forecaster": "tidemill-forecaster", "ai4i-failure": "tidemill-classifier",
            "diabetes-regressor": "tidemill-regressor"}
    policies = {p["metadata"]["name"] for p in manifests.find(docs, "NetworkPolicy")}
    assert set(isvcs) <= policies
    (sink,) = manifests.find(docs, "NetworkPolicy", "tidemill-control-api")
    logger = sink["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]
    assert sorted(logger["values"]) == sorted(isvcs)
    missing = manifests.helm(helm_bin, *manifests.template_args(sets=(
        "models[0].name=tidemill-classifier", "models[0].champion.storageUri=s3://b/m")))
    assert missing.returncode != 0 and "registeredModel" in missing.stderr


def _env(docs: list[dict[str, Any]], deployment: str) -> dict[str, str]:
    (deploy,) = manifests.find(docs, "Deployment", deployment)
    return {e["name"]: e.get("value") for e in
            deploy["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip


def test_platform_api_predicts_each_model_on_its_own_inferenceservice(
    rendered: dict[str, list[dict[str, Any]]], helm_bin: str
) -> None:
    """TIDEMILL_PREDICT_URLS maps each registered model to its own InferenceService's URL
    (the Knative service in serverless mode, the predictor Service in standard mode), so a
    predict by model name reaches the service that serves it; TIDEMILL_ROUTER_URL stays the
    forecaster's (a predict without a model name)."""
    svc = f"{manifests.NAMESPACE}.svc.cluster.local"
    env = _env(rendered["two-models"], "tidemill-platform-api")
    assert json.loads(env["TIDEMILL_PREDICT_URLS"]) == {
        "etth1-forecaster": f"http://tidemill-forecaster.{svc}",
        "ai4i-failure": f"http://tidemill-classifier.{svc}",
        "diabetes-regressor": f"http://tidemill-regressor.{svc}"}
    assert env["TIDEMILL_ROUTER_URL"] == f"http://tidemill-forecaster.{svc}"
    assert "TIDEMILL_PREDICT_URLS" not in _env(rendered["two-models"], "tidemill-control-api")
    assert "TIDEMILL_PREDICT_URLS" not in _env(rendered["default"], "tidemill-platform-api")
    _files, sets = PROFILES["two-models"]
    standard = manifests.render(helm_bin, (), (*sets, "forecaster.deploymentMode=standard",
                                               "forecaster.scaleMetric=cpu"))  # fmt: skip
    urls = json.loads(_env(standard, "tidemill-platform-api")["TIDEMILL_PREDICT_URLS"])
    assert urls["ai4i-failure"] == f"http://tidemill-classifier-predictor.{svc}"
    assert urls["etth1-forecaster"] == _env(standard, "tidemill-platform-api")[
        "TIDEMILL_ROUTER_URL"] == f"http://tidemill-forecaster-predictor.{svc}"  # fmt: skip


def test_mlflow_backend_and_artifacts(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for profile, secret in [
        ("default", "tidemill-postgresql-urls"),
        ("production", "tidemill-mlflow-db"),
    ]:
        (deploy,) = manifests.find(rendered[profile], "Deployment", "tidemill-mlflow")
        env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == secret
        assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].endswith("/mlflow")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "tidemill-s3"
        assert "tidemill-mlflow.tidemill.svc.cluster.local" in (
            env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
        )


def test_network_policies_cover_every_pod(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    selectors = [
        p["spec"]["podSelector"]["matchLabels"] for p in manifests.find(docs, "NetworkPolicy")
    ]
    pods = [
        d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in WORKLOAD_KINDS
    ]
    pods.append({"serving.kserve.io/inferenceservice": "tidemill-forecaster"})
    for labels in pods:
        assert any(sel.items() <= labels.items() for sel in selectors), labels


@pytest.mark.parametrize(
    "bad",
    [
        "forecaster.minReplicas=abc",
        "forecaster.challenger.trafficPercent=150",
        "forecaster.deploymentMode=hybrid",
        "mlflow.replicas=two",
        "networkPolicy.enabled=maybe",
        "mlflow.unknownKey=1",
    ],
)
def test_values_schema_rejects_wrong_values(helm_bin: str, bad: str) -> None:
    proc = manifests.helm(helm_bin, *manifests.template_args(sets=(bad,)))
    assert proc.returncode != 0
    assert "schema" in proc.stderr


def test_standard_mode_rejects_knative_scale_metric(helm_bin: str) -> None:
    proc = manifests.helm(
        helm_bin, *manifests.template_args(sets=("forecaster.deploymentMode=standard",))
    )
    assert proc.returncode != 0 and "scaleMetric" in proc.stderr


def test_external_database_requires_secret(helm_bin: str) -> None:
    proc = manifests.helm(helm_bin, *manifests.template_args(sets=("postgresql.enabled=false",)))
    assert proc.returncode != 0
    assert "existingSecret is required when postgresql.enabled=false" in proc.stderr
    others = ("postgresql.enabled=false", "mlflow.backendStore.existingSecret=m",
              "controlApi.predictionLog.existingSecret=p")
    proc = manifests.helm(helm_bin, *manifests.template_args(sets=others))
    assert proc.returncode != 0 and "platformApi.database.existingSecret" in proc.stderr


def test_monitoring_files_in_sync_and_embedded(rendered: dict[str, list[dict[str, Any]]]) -> None:
    sources = {
        "tidemill-dashboard.json": ROOT / "monitoring/grafana/tidemill-dashboard.json",
        "tidemill-rules.yaml": ROOT / "monitoring/alerts/tidemill-rules.yaml",
    }
    for name, source in sources.items():
        assert filecmp.cmp(source, CHART / "files" / name, shallow=False), (
            f"charts/tidemill/files/{name} is stale: run scripts/sync-chart-files.sh"
        )
    docs = rendered["production"]
    (rule,) = manifests.find(docs, "PrometheusRule")
    assert (
        rule["spec"]["groups"]
        == yaml.safe_load(sources["tidemill-rules.yaml"].read_text())["groups"]
    )
    (dashboard,) = manifests.find(docs, "ConfigMap", "tidemill-dashboard")
    assert json.loads(dashboard["data"]["tidemill-dashboard.json"]) == json.loads(
        sources["tidemill-dashboard.json"].read_text()
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_chart_docs_present() -> None:
    readme = (CHART / "README.md").read_text()
    assert "helm upgrade --install tidemill" in readme
    assert "apache-airflow/airflow" in readme
    assert (CHART / "templates" / "NOTES.txt").is_file()


def test_airflow_values() -> None:
    values = yaml.safe_load((ROOT / "charts" / "airflow-values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["images"]["airflow"]["repository"].endswith("/airflow")
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://tidemill-mlflow.tidemill.svc.cluster.local:5000"
    assert json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])["host"] == (
        "tidemill-mlflow.tidemill.svc.cluster.local"
    )
    assert values["dags"]["gitSync"]["enabled"] is False  # DAGs are baked into the image
    dockerfile = (ROOT / "docker" / "airflow" / "Dockerfile").read_text()
    assert "COPY --chown=airflow:root dags /opt/airflow/dags" in dockerfile
    assert "ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11" in dockerfile


def test_airflow_tasks_get_every_shared_state_url() -> None:
    """Each task pod shares nothing but URLs (pipelines.settings): all of them are set, the
    artifact store is S3, and credentials and database URLs come from Secrets."""
    from pipelines import settings

    values = yaml.safe_load((ROOT / "charts" / "airflow-values.yaml").read_text())
    env = {e["name"]: e["value"] for e in values["env"]}
    secret = {s["envName"]: (s["secretName"], s["secretKey"]) for s in values["secret"]}
    from pipelines import feature_store

    wanted = {settings.ARTIFACT_STORE_ENV, settings.MLFLOW_ENV, settings.OPTUNA_ENV,
              settings.PREDICTION_LOG_ENV, feature_store.REGISTRY_ENV, feature_store.ONLINE_ENV}
    assert wanted <= set(env) | set(secret)
    assert env[settings.ARTIFACT_STORE_ENV].startswith("s3://")
    assert env["TIDEMILL_SPLIT_BACKEND"] == "kubernetes"  # the split is the InferenceService
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", settings.OPTUNA_ENV,
                 settings.PREDICTION_LOG_ENV):
        assert name in secret and name not in env, name
    assert not values.get("volumes") and not values.get("volumeMounts")
    assert values["dags"]["persistence"]["enabled"] is False


@pytest.mark.parametrize("profile", ["default", "production"])
def test_platform_api_shares_nothing_but_urls(rendered: dict[str, list[dict[str, Any]]],
                                              profile: str) -> None:
    """The platform API's state is PostgreSQL and the same artifact store URL as the Airflow
    tasks that run its jobs; secrets come from Secrets; it acts with the control API's Role."""
    from pipelines import settings

    db_env, password_env = "TIDEMILL_PLATFORM_DB_URL", "TIDEMILL_AIRFLOW_PASSWORD"
    docs = rendered[profile]
    (deploy,) = manifests.find(docs, "Deployment", "tidemill-platform-api")
    spec = deploy["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "tidemill-control-api"
    (container,) = spec["containers"]
    assert container["command"][:2] == ["uvicorn", "serving.platform_api.app:app"]
    env = {e["name"]: e for e in container["env"]}
    for name in (db_env, settings.PREDICTION_LOG_ENV, "TIDEMILL_CONTROL_TOKEN",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", password_env):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    airflow = yaml.safe_load((ROOT / "charts" / "airflow-values.yaml").read_text())
    airflow_store = {e["name"]: e["value"] for e in airflow["env"]}[settings.ARTIFACT_STORE_ENV]
    store = env[settings.ARTIFACT_STORE_ENV]["value"]
    assert store.startswith("s3://") and store.split("/", 3)[3] == airflow_store.split("/", 3)[3]
    assert env["TIDEMILL_SPLIT_BACKEND"]["value"] == "kubernetes"
    router = env["TIDEMILL_ROUTER_URL"]["value"]
    if profile == "default":  # serverless: the Knative service; standard: the predictor's
        assert router == f"http://tidemill-forecaster.{manifests.NAMESPACE}.svc.cluster.local"
        (urls,) = manifests.find(docs, "Secret", "tidemill-postgresql-urls")
        assert env[db_env]["valueFrom"]["secretKeyRef"] == {
            "name": "tidemill-postgresql-urls", "key": "platform-db-url"}
        assert "platform-db-url" in urls["stringData"]
    else:
        assert router.startswith("http://tidemill-forecaster-predictor.")
        assert env[db_env]["valueFrom"]["secretKeyRef"]["name"] == "tidemill-platform-db"
    assert {v["name"] for v in spec["volumes"]} == {"tmp"}  # no shared volume


def test_ray_cluster_runs_the_tasks_image_locked_and_non_root(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The RayCluster the Airflow tasks connect to: their image and Ray version, non-root pods
    with a read-only root, and the address in charts/airflow-values.yaml is its head."""
    import re

    (cluster,) = manifests.find(rendered["default"], "RayCluster", "tidemill-ray")
    lock = (ROOT / "locks" / "orchestrator.txt").read_text()
    assert f"ray=={cluster['spec']['rayVersion']}" in lock.splitlines()
    airflow = yaml.safe_load((ROOT / "charts" / "airflow-values.yaml").read_text())
    specs = [cluster["spec"]["headGroupSpec"]["template"]["spec"],
             *(g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"])]
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        (container,) = spec["containers"]
        assert container["image"].startswith(airflow["images"]["airflow"]["repository"])
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(container["resources"])
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    env = {e["name"]: e["value"] for e in airflow["env"]}
    assert env["TIDEMILL_ENGINE"] == "ray"
    head = f"tidemill-ray-head-svc.{manifests.NAMESPACE}.svc.cluster.local"
    assert re.fullmatch(rf"ray://{re.escape(head)}:10001", env["TIDEMILL_RAY_ADDRESS"])


@pytest.mark.parametrize("profile", ["default", "production", "standard-challenger",
                                     "two-models"])
def test_feature_server_serves_the_predictors(rendered: dict[str, list[dict[str, Any]]],
                                              profile: str) -> None:
    """Feast's feature server runs the Airflow image (Feast is in the orchestrator lock) on the
    registry and online store the Airflow tasks use; every predictor gets its URL, and only the
    predictors may reach it."""
    from pipelines import feature_store

    docs = rendered[profile]
    (deploy,) = manifests.find(docs, "Deployment", "tidemill-feature-server")
    (service,) = manifests.find(docs, "Service", "tidemill-feature-server")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    airflow = yaml.safe_load((ROOT / "charts" / "airflow-values.yaml").read_text())
    assert container["image"].startswith(airflow["images"]["airflow"]["repository"])
    assert container["command"][:5] == ["python", "-m", "tidemill.cli", "features", "serve"]
    port = service["spec"]["ports"][0]["port"]
    assert container["command"][-1] == str(port)
    env = {e["name"]: e for e in container["env"]}
    refs = {n: env[n]["valueFrom"]["secretKeyRef"]
            for n in (feature_store.REGISTRY_ENV, feature_store.ONLINE_ENV)}
    if profile == "production":
        assert {r["name"] for r in refs.values()} == {"tidemill-feast-db"}
    else:  # the in-chart database, the keys the Airflow tasks read too
        assert [r["key"] for r in refs.values()] == ["feast-registry-url", "feast-online-url"]
        (urls,) = manifests.find(docs, "Secret", "tidemill-postgresql-urls")
        assert {r["key"] for r in refs.values()} <= set(urls["stringData"])
    isvcs = manifests.find(docs, "InferenceService")
    url = f"http://tidemill-feature-server.{manifests.NAMESPACE}.svc.cluster.local:{port}"
    for isvc in isvcs:
        for predictor in predictors(isvc):
            model_env = {e["name"]: e.get("value") for e in predictor["model"]["env"]}
            assert model_env["TIDEMILL_FEAST_FEATURE_SERVER_URL"] == url
            assert (model_env["TIDEMILL_FEAST_FEATURE_VIEW"],
                    model_env["TIDEMILL_FEAST_ENTITY_KEY"]) == ("ai4i_machine", "UDI")
    (policy,) = manifests.find(docs, "NetworkPolicy", "tidemill-feature-server")
    assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchExpressions": [{
        "key": "serving.kserve.io/inferenceservice", "operator": "In",
        "values": [i["metadata"]["name"] for i in isvcs]}]}}]


def test_platform_api_can_be_left_out(helm_bin: str) -> None:
    docs = manifests.render(helm_bin, sets=("platformApi.enabled=false",))
    assert not [d for d in docs if "platform-api" in d["metadata"]["name"]]


def test_postgresql_serves_the_airflow_tasks(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    (urls,) = manifests.find(docs, "Secret", "tidemill-postgresql-urls")
    assert {"mlflow-uri", "prediction-log-url", "optuna-url", "feast-registry-url",
            "feast-online-url"} <= set(urls["stringData"])
    (policy,) = manifests.find(docs, "NetworkPolicy", "tidemill-postgresql")
    sources = policy["spec"]["ingress"][0]["from"]
    namespaces = [
        f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for f in sources
        if "namespaceSelector" in f
    ]
    assert namespaces == ["airflow"]


def test_crd_copies_match_kinds() -> None:
    for (api_version, kind), filename in manifests.CRD_FILES.items():
        crd = yaml.safe_load((manifests.CRD_DIR / filename).read_text())
        assert crd["spec"]["names"]["kind"] == kind
        assert api_version.split("/")[0] == crd["spec"]["group"]
        assert Path(manifests.CRD_DIR / filename).stat().st_size > 0
