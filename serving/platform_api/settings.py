"""Configuration of the platform API, from the environment (defaults: the Tidemill home)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipelines.home import TidemillHome
from pipelines.settings import Settings
from serving.stack import control_token

DB_ENV = "TIDEMILL_PLATFORM_DB_URL"
MAX_UPLOAD_ENV = "TIDEMILL_MAX_UPLOAD_MB"
AIRFLOW_URL_ENV = "TIDEMILL_AIRFLOW_URL"
AIRFLOW_USER_ENV = "TIDEMILL_AIRFLOW_USER"
AIRFLOW_PASSWORD_ENV = "TIDEMILL_AIRFLOW_PASSWORD"
AIRFLOW_PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


@dataclass(frozen=True)
class PlatformSettings:
    """``token``: bearer token of every write, the control API's (``TIDEMILL_CONTROL_TOKEN`` or
    the home's ``serving/control_token`` file);
    ``db_url``: SQLAlchemy URL of datasets and jobs (SQLite in the home, PostgreSQL on
    Kubernetes); ``store_url`` and ``tracking_uri``: the artifact store and MLflow URLs of
    ``pipelines.settings``;
    ``airflow_url`` and its user: where training jobs run (password from the environment or
    the home's Airflow simple-auth password file)."""

    home: TidemillHome
    token: str
    db_url: str
    store_url: str
    max_upload_bytes: int
    airflow_url: str
    airflow_user: str
    airflow_password: str | None
    tracking_uri: str

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
        )
