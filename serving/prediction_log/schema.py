"""Tables of the prediction log (SQLAlchemy Core). Read by the drift and promotion DAGs.

``prediction_requests``: one row per served request (a request forecasts one or more windows).

- ``request_id`` (primary key); ``ts``: when it was served (UTC); ``caller``: the caller key
  that chose the variant (may be null)
- ``variant``: ``champion`` / ``challenger`` (or the predictor's label on Kubernetes)
- ``model_name``, ``model_version``: the registered model and version that answered
- ``windows``: how many history windows the request forecast; ``horizon``; ``exog_columns``:
  exogenous inputs sent
- ``payload``: JSON, one list entry per window in request order: ``series_id``; the input
  window's summary ``history_len``, ``history_last_ds``, ``history_mean``, ``history_std``,
  ``history_last``; and the forecast ``ds``, ``yhat``, ``lower``, ``upper`` (``windows x
  horizon`` lists). Timestamps in the payload are epoch seconds (UTC); the readers give
  them as ``YYYY-MM-DDTHH:MM:SS`` strings.

One row per request, not per window: a batch of 100 windows costs one insert (per-window rows
cost ~20 us each, as much CPU as the forecast itself). ``reader.logged_windows`` and
``reader.forecast_points`` flatten it per window and per forecast step.

``actuals``: observed values fed back through ``POST /feedback``: ``series_id``, ``ds`` (ISO,
seconds), ``y``, ``received_at``, ``request_id`` (null when matched by series and timestamp).

``ab_tests``: experiments started through ``POST /ab-tests`` (or the platform API); ``name``:
optional, unique (a test is read by id or name). A log created before names existed gets the
column and its unique index when opened (its tests keep no name).

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
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError, OperationalError

metadata = MetaData()

prediction_requests = Table(
    "prediction_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("ts", DateTime, nullable=False, index=True),
    Column("caller", String(256)),
    Column("variant", String(32), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("windows", Integer, nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("exog_columns", Integer, nullable=False, default=0),
    Column("payload", JSON, nullable=False),
)
PAYLOAD_KEYS = ("series_id", "history_len", "history_last_ds", "history_mean", "history_std",
                "history_last", "ds", "yhat", "lower", "upper")

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
    Column("name", String(64)),
)
AB_TEST_NAME_INDEX = Index("ux_ab_tests_name", ab_tests.c.name, unique=True)


def engine_for(url: str) -> Engine:
    """An engine with the tables created; SQLite gets WAL and a busy timeout (many writers),
    and a new SQLite file 16 KiB pages: a batch-100 request's row (~14 KiB of JSON) then
    fills one page and a bit instead of four overflow pages (inserts 25% cheaper)."""
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA page_size=16384")  # no effect on a file that has tables
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    try:
        metadata.create_all(engine, checkfirst=True)
    except OperationalError:  # another process created the tables at the same moment
        metadata.create_all(engine, checkfirst=True)
    _add_ab_test_names(engine)
    return engine


def _add_ab_test_names(engine: Engine) -> None:
    """``ab_tests.name`` and its unique index on a log created before tests had names."""
    if "name" in {c["name"] for c in inspect(engine).get_columns("ab_tests")}:
        return
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE ab_tests ADD COLUMN name VARCHAR(64)"))
            AB_TEST_NAME_INDEX.create(conn, checkfirst=True)
    except DBAPIError:  # another process added it at the same moment
        if "name" not in {c["name"] for c in inspect(engine).get_columns("ab_tests")}:
            raise
