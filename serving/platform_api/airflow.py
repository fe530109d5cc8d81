"""Airflow's REST API (v2, Airflow 3) as the platform API uses it: trigger a DAG run, read its
state, its task instances and the error of a failed task. JWT from ``/auth/token``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from serving.platform_api.settings import AIRFLOW_PASSWORD_FILE, PlatformSettings


class AirflowUnavailable(RuntimeError):
    """Airflow could not be reached or refused the call; the message names the URL."""


class AirflowClient:
    def __init__(self, settings: PlatformSettings, timeout: float = 60.0) -> None:
        """``timeout`` outwaits the local metadata database's lock wait (30 s, SQLite)."""
        self.settings = settings
        self.base = settings.airflow_url
        self._http = httpx.Client(base_url=self.base, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def _password(self) -> str:
        if self.settings.airflow_password:
            return self.settings.airflow_password
        path = Path(self.settings.home.airflow_home) / AIRFLOW_PASSWORD_FILE
        try:
            return json.loads(path.read_text())[self.settings.airflow_user]
        except (OSError, ValueError, KeyError) as exc:
            raise AirflowUnavailable(
                f"no Airflow password: set TIDEMILL_AIRFLOW_PASSWORD or start Airflow with "
                f"`tidemill up` (reads {path}): {exc}"
            ) from exc

    def _login(self) -> str:
        resp = self._http.post(
            "/auth/token",
            json={"username": self.settings.airflow_user, "password": self._password()},
        )
        if resp.status_code >= 300:
            raise AirflowUnavailable(
                f"Airflow at {self.base} refused the login of {self.settings.airflow_user!r}: "
                f"{resp.status_code} {resp.text[:200]}"
            )
        return resp.json()["access_token"]

    def call(self, method: str, path: str, extra_headers: dict[str, str] | None = None,
             **kwargs: Any) -> httpx.Response:  # fmt: skip
        """One call to ``/api/v2<path>``; logs in (again) when the token is missing or expired."""
        extra_headers = extra_headers or {}
        try:
            for attempt in (1, 2):
                if self._token is None:
                    self._token = self._login()
                headers = {**extra_headers, "Authorization": f"Bearer {self._token}"}
                resp = self._http.request(method, f"/api/v2{path}", headers=headers, **kwargs)
                if resp.status_code != 401 or attempt == 2:
                    return resp
                self._token = None
        except httpx.HTTPError as exc:
            raise AirflowUnavailable(f"Airflow at {self.base} unreachable: {exc}") from exc
        raise AssertionError("unreachable")

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        resp = self.call(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        if resp.status_code >= 300:
            raise AirflowUnavailable(
                f"Airflow at {self.base} did not start {dag_id}: {resp.status_code} "
                f"{resp.text[:300]}"
            )
        return resp.json()

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        resp = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        if resp.status_code >= 300:
            raise AirflowUnavailable(
                f"Airflow at {self.base}: dag run {dag_id}/{run_id}: {resp.status_code}"
            )
        return resp.json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        resp = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                         params={"limit": 1000})  # fmt: skip
        if resp.status_code >= 300:
            raise AirflowUnavailable(
                f"Airflow at {self.base}: task instances of {dag_id}/{run_id}: {resp.status_code}"
            )
        return resp.json()["task_instances"]

    def failure(self, dag_id: str, run_id: str, ti: dict[str, Any]) -> str:
        """The error lines of a failed task instance's log (its last try)."""
        map_index = ti.get("map_index", -1)
        resp = self.call(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
            f"{ti.get('try_number') or 1}",
            params={"map_index": map_index, "full_content": "true"},
            extra_headers={"Accept": "application/json"},
        )
        where = ti["task_id"] + (f"[{map_index}]" if map_index not in (-1, None) else "")
        if resp.status_code >= 300:
            return f"task {where} failed (its log could not be read: {resp.status_code})"
        return f"task {where} failed: {_error_text(resp.json().get('content', []))}"


def _error_text(content: list[Any]) -> str:
    """The exception of a structured task log (``error_detail``), else its error lines."""
    errors: list[str] = []
    for entry in content:
        if not isinstance(entry, dict):
            continue
        for detail in entry.get("error_detail") or []:
            if isinstance(detail, dict) and detail.get("exc_type"):
                errors.append(f"{detail['exc_type']}: {detail.get('exc_value', '')}")
        if not errors and str(entry.get("level", "")).lower() in ("error", "critical"):
            errors.append(str(entry.get("event", "")))
    if not errors:
        lines = [str(e) for e in content if isinstance(e, str) and "Error" in e]
        errors = lines[-3:]
    return errors[-1] if errors else "no error recorded in its log"
