"""Configuration of the platform API, from the environment (defaults: the Tidemill home)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from pipelines.home import TidemillHome
from pipelines.settings import Settings
from serving.stack import control_token

DB_ENV = "TIDEMILL_PLATFORM_DB_URL"
MAX_UPLOAD_ENV = "TIDEMILL_MAX_UPLOAD_MB"
AIRFLOW_URL_ENV = "TIDEMILL_AIRFLOW_URL"
AIRFLOW_USER_ENV = "TIDEMILL_AIRFLOW_USER"
AIRFLOW_PASSWORD_ENV = "TIDEMILL_AIRFLOW_PASSWORD"
AIRFLOW_PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
PREDICT_URLS_ENV = "TIDEMILL_PREDICT_URLS"


def predict_urls(raw: str | None) -> dict[str, str]:
    """``TIDEMILL_PREDICT_URLS``: a JSON object, registered model -> base URL of the server
    that serves it alone (on Kubernetes its InferenceService; the chart renders it)."""
    if not raw:
        return {}
    try:
        urls = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{PREDICT_URLS_ENV} is not JSON: {exc}") from exc
    if not isinstance(urls, dict) or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls.values()):
        raise ValueError(f"{PREDICT_URLS_ENV} must be a JSON object, registered model -> "
                         f"http(s) URL; got {raw!r}")  # fmt: skip
    return {str(name): url.rstrip("/") for name, url in urls.items()}


@dataclass(frozen=True)
class PlatformSettings:
    """``token``: bearer token of every write, the control API's (``TIDEMILL_CONTROL_TOKEN`` or
    the home's ``serving/control_token`` file);
    ``db_url``: SQLAlchemy URL of datasets and jobs (SQLite in the home, PostgreSQL on
    Kubernetes); ``store_url`` and ``tracking_uri``: the artifact store and MLflow URLs of
    ``pipelines.settings``;
    ``airflow_url`` and its user: where training jobs run (password from the environment or
    the home's Airflow simple-auth password file);
    ``predict_urls``: where a predict by model name goes (``TIDEMILL_PREDICT_URLS``; empty: the
    router)."""

    home: TidemillHome
    token: str
    db_url: str
    store_url: str
    max_upload_bytes: int
    airflow_url: str
    airflow_user: str
    airflow_password: str | None
    tracking_uri: str
    predict_urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, home: TidemillHome | None = None) -> PlatformSettings:
        shared = Settings.resolve(home)
        home = shared.home
        env = os.environ.get
        return cls(
            home=home,
            token=control_token(home),
            db_url=env(DB_ENV) or f"sqlite:///{home.root / 'platform.db'}",
            store_url=shared.artifact_store_url,
            max_upload_bytes=int(float(env(MAX_UPLOAD_ENV) or 100) * 1024 * 1024),
            airflow_url=(env(AIRFLOW_URL_ENV) or "http://127.0.0.1:8280").rstrip("/"),
            airflow_user=env(AIRFLOW_USER_ENV) or "admin",
            airflow_password=env(AIRFLOW_PASSWORD_ENV) or None,
            tracking_uri=shared.mlflow_tracking_uri,
            predict_urls=predict_urls(env(PREDICT_URLS_ENV)),
        )
