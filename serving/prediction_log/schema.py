"""Tables of the prediction log (SQLAlchemy Core). Read by the drift and promotion DAGs.

``predictions``: one row per forecast window served.

- ``request_id`` + ``window``: the request and the window's position in it (primary key)
- ``ts``: when it was served (UTC); ``caller``: the caller key that chose the variant (may be null)
- ``variant``: ``champion`` / ``challenger`` (or the predictor's label on Kubernetes)
- ``model_name``, ``model_version``: the registered model and version that answered
- ``series_id``; ``history_len``, ``history_last_ds``, ``history_mean``, ``history_std``,
  ``history_last``: a summary of the input window; ``exog_columns``: exogenous inputs sent
- ``horizon``; ``forecast``: JSON list of ``{"ds", "yhat", "lower", "upper"}`` (ISO ``ds``)

``actuals``: observed values fed back through ``POST /feedback``: ``series_id``, ``ds`` (ISO,
seconds), ``y``, ``received_at``, ``request_id`` (null when matched by series and timestamp).

``ab_tests``: experiments started through ``POST /ab-tests``.

Timestamps are naive UTC; ``ds`` strings are ``YYYY-MM-DDTHH:MM:SS`` so they join as text.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)
from sqlalchemy.exc import OperationalError

metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("window", Integer, primary_key=True),
    Column("ts", DateTime, nullable=False, index=True),
    Column("caller", String(256)),
    Column("variant", String(32), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("series_id", String(256)),
    Column("history_len", Integer, nullable=False),
    Column("history_last_ds", String(32), nullable=False),
    Column("history_mean", Float, nullable=False),
    Column("history_std", Float, nullable=False),
    Column("history_last", Float, nullable=False),
    Column("exog_columns", Integer, nullable=False, default=0),
    Column("horizon", Integer, nullable=False),
    Column("forecast", JSON, nullable=False),
)
Index("ix_predictions_series", predictions.c.series_id, predictions.c.ts)

actuals = Table(
    "actuals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", String(256)),
    Column("ds", String(32), nullable=False),
    Column("y", Float, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("request_id", String(64), index=True),
)
Index("ix_actuals_series_ds", actuals.c.series_id, actuals.c.ds)

ab_tests = Table(
    "ab_tests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model_name", String(256), nullable=False),
    Column("champion_version", String(32), nullable=False),
    Column("challenger_version", String(32), nullable=False),
    Column("challenger_percent", Integer, nullable=False),
    Column("metric", String(16), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("ends_at", DateTime, nullable=False),
)


def engine_for(url: str) -> Engine:
    """An engine with the tables created; SQLite gets WAL and a busy timeout (many writers)."""
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    try:
        metadata.create_all(engine, checkfirst=True)
    except OperationalError:  # another process created the tables at the same moment
        metadata.create_all(engine, checkfirst=True)
    return engine
