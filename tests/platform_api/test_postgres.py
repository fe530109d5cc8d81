"""The platform API on a real PostgreSQL (Debian's, started by tests/servers.py): dataset
versions land in its tables and survive a restart of the API."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.platform_api.conftest import TOKEN, ai4i_slice, start_api
from tests.platform_api.test_datasets import upload
from tests.servers import postgres


def test_datasets_on_postgresql(tmp_path: Path) -> None:
    with postgres() as pg:
        url = pg.create_database("platform")
        home, log = tmp_path / "home", tmp_path / "api.log"
        first = start_api(home, log, TIDEMILL_PLATFORM_DB_URL=url)
        try:
            with httpx.Client(base_url=first.url, timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as http:  # fmt: skip
                made = upload(http, ai4i_slice(120), "pg", target_column="Machine failure")
                assert made.status_code == 201, made.text
                clean = http.post("/api/ml/data/clean", json={"dataset_id": made.json()["id"]})
                assert clean.status_code == 201, clean.text
        finally:
            first.stop()
        engine = create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, version, operation, rows FROM "
                                     "platform_datasets ORDER BY version")).all()  # fmt: skip
        engine.dispose()
        assert [tuple(r) for r in rows] == [("pg", 1, "upload", 120), ("pg", 2, "clean", 120)]
        second = start_api(home, log, TIDEMILL_PLATFORM_DB_URL=url)
        try:
            got = httpx.get(f"{second.url}/api/ml/datasets/{clean.json()['id']}", timeout=30)
            assert got.status_code == 200 and got.json()["parent_id"] == made.json()["id"]
            assert got.json()["created_at"].endswith("+00:00")
        finally:
            second.stop()
