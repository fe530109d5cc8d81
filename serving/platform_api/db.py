"""Datasets (every version is a row) and jobs, in a real database through SQLAlchemy.

SQLite in the Tidemill home by default; a PostgreSQL URL (``postgresql+psycopg://...``) on
Kubernetes. Tables are created when missing; rows are only ever added or, for jobs, updated.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)

metadata = MetaData()

datasets = Table(
    "platform_datasets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("parent_id", String(32), ForeignKey("platform_datasets.id"), nullable=True),
    Column("operation", String(32), nullable=False),  # upload, clean, select-features, split
    Column("params", JSON, nullable=False),
    Column("target_column", String(200), nullable=True),
    Column("url", Text, nullable=False),  # Parquet file in the artifact store
    Column("source_filename", Text, nullable=True),
    Column("rows", Integer, nullable=False),
    Column("profile", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("name", "version"),
)

jobs = Table(
    "platform_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),  # train, tune
    Column("dataset_id", String(32), ForeignKey("platform_datasets.id"), nullable=False),
    Column("request", JSON, nullable=False),
    Column("config_url", Text, nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("dag_run_id", String(250), nullable=True),
    Column("status", String(16), nullable=False),  # pending, running, completed, failed
    Column("progress", JSON, nullable=True),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def open_engine(url: str) -> Engine:
    """The engine, tables created; SQLite waits on locks instead of failing at once."""
    sqlite = url.startswith("sqlite")
    engine = create_engine(
        url, connect_args={"timeout": 30, "check_same_thread": False} if sqlite else {}
    )
    if sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    metadata.create_all(engine)
    return engine
