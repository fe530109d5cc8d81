"""``tidemill up`` rides out Airflow's transient 500s: on SQLite its API answers 500 while the
scheduler or DAG processor holds the write lock (a CI run on 2026-11-23 failed this way)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from tidemill.platform import _unpause_dags


class _Airflow(BaseHTTPRequestHandler):
    """Airflow's token and bulk-unpause endpoints, the first ``locked`` PATCHes answered as
    Airflow answers them when its SQLite database is locked."""

    locked = 0
    patches: ClassVar[list[str]] = []

    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # /auth/token
        self.rfile.read(int(self.headers["content-length"]))
        self._send(201, {"access_token": "t"})

    def do_PATCH(self) -> None:  # /api/v2/dags
        self.rfile.read(int(self.headers["content-length"]))
        type(self).patches.append(self.headers["authorization"])
        if len(type(self).patches) <= type(self).locked:
            self._send(500, {"detail": "(sqlite3.OperationalError) database is locked"})
        else:
            self._send(200, {"dags": [{"dag_id": "b"}, {"dag_id": "a"}], "total_entries": 2})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def airflow() -> Iterator[tuple[str, type[_Airflow]]]:
    handler = type("Handler", (_Airflow,), {"patches": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_locked_database_is_retried(airflow: tuple[str, type[_Airflow]]) -> None:
    url, handler = airflow
    handler.locked = 2
    assert _unpause_dags(url, "pw", pause_s=0.01) == ["a", "b"]
    assert handler.patches == ["Bearer t"] * 3


def test_a_lock_that_outlasts_the_attempts_is_an_error(
        airflow: tuple[str, type[_Airflow]]) -> None:
    url, handler = airflow
    handler.locked = 10
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        _unpause_dags(url, "pw", attempts=3, pause_s=0.01)
    assert len(handler.patches) == 3
