"""MLflow tracking and model registry: experiments, model logging, versions and aliases.

Aliases are the source of truth (``champion``, ``challenger``); they are mirrored to the
legacy stages (Production, Staging, Archived) for users who still read stages.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipelines.config import ExperimentConfig
from pipelines.home import TidemillHome
from pipelines.settings import Settings

log = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHAMPION = "champion"
CHALLENGER = "challenger"
STAGE_OF_ALIAS = {CHAMPION: "Production", CHALLENGER: "Staging"}
REGISTRATION_TAG = "tidemill.registration"
PENDING, COMPLETE = "pending", "complete"


def tracking_uri(cfg: ExperimentConfig, home: TidemillHome) -> str:
    """The config's URI, else ``$MLFLOW_TRACKING_URI`` (Kubernetes), else the home's SQLite."""
    return Settings.resolve(home, cfg).mlflow_tracking_uri


def use_store(uri: str) -> None:
    """Make ``uri`` MLflow's tracking and registry store in this process.

    ``mlflow.set_tracking_uri`` and ``set_registry_uri`` also export the URI as
    ``$MLFLOW_TRACKING_URI`` and ``$MLFLOW_REGISTRY_URI``, which ``tracking_uri`` and every
    child process (``airflow dags test``) would then prefer to the next home's own store (a
    second home would register into the first); the caller's environment is put back."""
    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def configure(cfg: ExperimentConfig, home: TidemillHome) -> str:
    """Point MLflow at the configured store and make the experiment active (created if new)."""
    uri = tracking_uri(cfg, home)
    use_store(uri)
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        location = home.artifacts_dir.as_uri() if uri == home.mlflow_uri else None
        with contextlib.suppress(MlflowException):  # created concurrently by another task
            client.create_experiment(cfg.mlflow.experiment, artifact_location=location)
        exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return exp.experiment_id


def log_curves(curves: dict[str, list[float]]) -> None:
    """Log each curve (metric name -> its values at steps 1, 2, ...) to the active run in one
    request, not one per point (a tracking server took ~0.1 s a point); points that are not
    finite are left out."""
    stamp = int(time.time() * 1000)
    points = [
        Metric(name, float(value), stamp, step)
        for name, curve in curves.items()
        for step, value in enumerate(curve, start=1)
        if math.isfinite(value)
    ]
    if points:
        MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=points)


def log_bundle_model(bundle_dir: Path, algorithm: str, input_example: Any, horizon: int) -> str:
    """Log the bundle as a pyfunc model named ``model`` in the active run; return its URI.

    ``input_example``: a history frame ``unique_id, ds, y`` (and the model's regressors).
    The signature's inputs are ``unique_id`` (optional string), ``ds``, ``y`` and the
    regressors: ``mlflow models serve`` drops columns the signature lacks, and without
    ``unique_id`` it could not forecast several series.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    from pipelines import mlflow_entry
    from pipelines.bundle import ForecastBundle
    from pipelines.pyfunc_model import forecast_frame, pip_requirements

    bundle = ForecastBundle.load(bundle_dir)
    output_example = forecast_frame(bundle, input_example, horizon)
    spec = bundle.exogenous
    inputs = Schema(
        [
            ColSpec("string", "unique_id", required=False),
            ColSpec("datetime", "ds"),
            ColSpec("double", "y"),
            *(ColSpec("double", c) for c in (*spec.historical, *spec.future)),
        ]
    )
    with warnings.catch_warnings():  # integer-column hints: our ints are never missing
        warnings.simplefilter("ignore", UserWarning)
        inferred = infer_signature(input_example, output_example, params={"horizon": horizon})
        signature = ModelSignature(inputs, inferred.outputs, inferred.params)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=mlflow_entry.__file__,
            artifacts={"bundle": str(bundle_dir)},
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements(algorithm),
        )
    return info.model_uri


def register_version(
    name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
    client: MlflowClient,
    description: str | None = None,
    model_description: str = "Tidemill forecaster; aliases champion/challenger.",
) -> tuple[ModelVersion, list[str]]:
    """Register a new version and move aliases: always ``challenger``; ``champion`` if none.

    ``description`` (Markdown, e.g. a model card) is the version's description;
    ``model_description`` the registered model's, when this call creates it.

    All or nothing, and safe to retry after any failure (MLflow dying mid-way included): the
    version is created tagged ``tidemill.registration=pending`` and tagged ``complete`` only
    once its aliases are set; serving and promotion refuse a pending version
    (:func:`is_complete`). A failed attempt deletes its version; when that delete fails too
    (the server is gone), the retry finds the versions of the same run and source: a complete
    one is returned as it is, the newest pending one is completed, and any other is deleted,
    so exactly one complete version results and nothing half-registered is left.
    """
    try:
        client.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # created by an attempt that then died
            client.create_registered_model(name, description=model_description)
    earlier = _versions_of(client, name, run_id, model_uri)
    done = [v for v in earlier if is_complete(v)]
    if done:
        mv = client.get_model_version(name, done[-1].version)  # a search leaves out aliases
        held = sorted(a for a in mv.aliases if a in STAGE_OF_ALIAS)
        log.warning("%s v%s was already registered for run %s; not registering again",
                    name, mv.version, run_id)
        return mv, held
    resumable = [v for v in earlier if v.status != "FAILED_REGISTRATION"]
    mv = resumable[-1] if resumable else None
    for stale in earlier:
        if mv is None or stale.version != mv.version:
            log.warning("deleting %s v%s, left half-registered by an earlier attempt",
                        name, stale.version)
            client.delete_model_version(name, stale.version)
    if mv is not None:
        log.warning("completing %s v%s, left half-registered by an earlier attempt",
                    name, mv.version)
    else:
        # a logged model's URI (models:/m-<id>) needs its id too on an MLflow tracking server
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") \
            else None
        mv = client.create_model_version(
            name, source=model_uri, run_id=run_id, description=description, model_id=model_id,
            tags={**tags, REGISTRATION_TAG: PENDING},
        )
    try:
        aliases = _complete(client, name, mv.version, model_uri)
    except Exception:
        log.exception("registration of %s v%s failed; deleting the version", name, mv.version)
        try:
            client.delete_model_version(name, mv.version)
        except Exception:
            log.exception("could not delete %s v%s either: it stays tagged %s=%s (never "
                          "served) and the next attempt completes or deletes it",
                          name, mv.version, REGISTRATION_TAG, PENDING)
        raise
    return client.get_model_version(name, mv.version), aliases


def is_complete(mv: ModelVersion) -> bool:
    """False for a version whose registration did not finish (``tidemill.registration`` is
    ``pending``): it may lack aliases or its identity file, and is never served or promoted.
    A version registered by other means (no tag) counts as complete."""
    return (mv.tags or {}).get(REGISTRATION_TAG, COMPLETE) == COMPLETE


def _versions_of(
    client: MlflowClient, name: str, run_id: str, model_uri: str
) -> list[ModelVersion]:
    """The versions of ``name`` registered from ``model_uri`` of run ``run_id``, oldest first."""
    found = client.search_model_versions(
        f"name={filter_literal(name, 'model name')} and "
        f"run_id={filter_literal(run_id, 'run id')}")
    return sorted((v for v in found if v.source == model_uri), key=lambda v: int(v.version))


def _complete(client: MlflowClient, name: str, version: str, model_uri: str) -> list[str]:
    """Finish a version (idempotent steps): ready, identity recorded, aliases, then the tag."""
    _wait_ready(client, name, version)
    if model_uri.startswith("models:/m-"):
        _record_identity(client, model_uri.removeprefix("models:/"), name, version)
    aliases = [CHALLENGER]
    champion = _alias_version(client, name, CHAMPION)
    if champion is None or champion == str(version):
        aliases.append(CHAMPION)
    for alias in aliases:
        set_alias(client, name, alias, version)
    client.set_model_version_tag(name, version, REGISTRATION_TAG, COMPLETE)
    return aliases


def _record_identity(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Write ``registered_model_meta`` (what MLflow writes when it downloads
    ``models:/<name>/<version>``) into the logged model's artifacts, so the directory KServe
    mounts from the version's storage URI says which registered version it is."""
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "registered_model_meta"
        meta.write_text(yaml.safe_dump({"model_name": name, "model_version": str(version)}))
        client.log_model_artifact(model_id, str(meta))


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` and mirror it to the matching stage."""
    client.set_registered_model_alias(name, alias, version)
    stage = STAGE_OF_ALIAS.get(alias)
    if stage:
        # champion wins over challenger when a version carries both
        held = client.get_model_version(name, version).aliases
        if alias == CHALLENGER and CHAMPION in held:
            stage = STAGE_OF_ALIAS[CHAMPION]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.transition_model_version_stage(name, version, stage)


def aliases_of(client: MlflowClient, name: str, version: str) -> list[str]:
    return sorted(client.get_model_version(name, version).aliases)


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points at (None when unset; raises when MLflow cannot answer)."""
    version = (client.get_registered_model(name).aliases or {}).get(alias)
    return None if version is None else str(version)


def _wait_ready(client: MlflowClient, name: str, version: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"model version {name} v{version} is {status}")
        time.sleep(0.2)


def load_registered_bundle(uri: str, name: str, version: str) -> Any:
    """Download version ``version`` of ``name`` and load the forecast bundle it carries."""
    from pipelines.bundle import ForecastBundle

    use_store(uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    return ForecastBundle.load(local / "artifacts" / "bundle")


def filter_literal(value: str, what: str = "value") -> str:
    """``value`` as a quoted string of an MLflow search filter. MLflow's filter grammar has
    no escape for a quote inside a string, so a value holding a quote, a backslash or a
    control character is refused (ValueError naming ``what``) instead of changing the
    filter's meaning."""
    if not isinstance(value, str) or any(c in "'\"\\`" or not c.isprintable() for c in value):
        raise ValueError(f"{what} {value!r} may not contain quotes, backslashes or control "
                         "characters")
    return f"'{value}'"


def check_version(tracking_uri: str, name: str, version: str) -> None:
    """Load ``name`` version ``version`` as an MLflow pyfunc and predict its logged input
    example: raises (naming the version and the failure) when it cannot load or forecast.
    Runs in both environments; serving's ``check_registered`` also loads it as the router does.
    """
    import numpy as np
    import pandas as pd

    try:
        use_store(tracking_uri)
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        example = model.input_example
        if example is None:
            raise RuntimeError("the version has no logged input example to predict")
        out = model.predict(example)
        numeric = pd.DataFrame(out).select_dtypes("number").to_numpy(dtype=float)
        if len(numeric) == 0 or not np.isfinite(numeric).all():
            raise RuntimeError("its test prediction is empty or not finite")
    except Exception as exc:
        raise RuntimeError(f"{name} version {version} failed its load and test prediction: "
                           f"{type(exc).__name__}: {exc}") from exc
