"""The feature store: Feast, configured from Tidemill's settings, with Tidemill's feature views.

Locally everything sits in the home (``<home>/feast``: the file registry, the SQLite online
store) and the offline store is Feast's file (Dask) store over Parquet in the artifact store.
On Kubernetes ``TIDEMILL_FEAST_REGISTRY_URL`` (a SQL registry, e.g. PostgreSQL) and
``TIDEMILL_FEAST_ONLINE_URL`` (``postgresql://user:password@host:port/db``, ``?sslmode=``
as libpq, default ``prefer``) point every pod at
the same registry and online store; nothing is local.

Feature views (``VIEWS``):

- ``etth1_covariates`` (entity ``series``, key ``series_id``): the six load measurements of
  ETTh1 (HUFL ... LULL) per hour, the "weather-like" covariates of a forecast, stamped with
  the hour they were measured; a value older than 2 days at a row's time is missing.
- ``ai4i_machine`` (entity ``machine``, key ``UDI``, an integer): the six features of an AI4I
  2020 record (``Type`` as text, the five measurements as numbers). AI4I has no clock; its
  records are numbered in order (``UDI`` 1..10000), so record ``UDI`` is stamped
  ``AI4I_EPOCH + UDI minutes`` (2020-01-01 00:01 UTC for UDI 1), the same stamp its label
  gets in ``ai4i_training_rows``. No TTL: a machine's newest record stays its features.

Training sets come from ``historical_features`` (Feast's point-in-time join: each row gets
the latest value stamped at or before its own time, never a later one); ``materialize``
copies the newest values into the online store, which ``online_features`` and Feast's
feature server (``serve``: ``POST /get-online-features``, what serving calls) read.

``publish_csvs`` then ``materialize`` from ``MATERIALIZE_FROM`` is what the
``feature_materialize`` DAG runs, ``tidemill features sync`` and ``tidemill up`` (with the
project's CSVs, ``pipelines.feature_sources``) too; each prints a line per view.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlparse

import pandas as pd

from pipelines import artifact_store
from pipelines.feature_sources import AI4I_VIEW, ETTH1_VIEW
from pipelines.home import TidemillHome
from pipelines.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

_FEAST_SETS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")
REGISTRY_ENV = "TIDEMILL_FEAST_REGISTRY_URL"
ONLINE_ENV = "TIDEMILL_FEAST_ONLINE_URL"
PROJECT = "tidemill"
ENTITY_KEY = "series_id"
TIMESTAMP = "event_timestamp"
ETTH1_COVARIATES = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
TTL = timedelta(days=2)  # a covariate older than this at a row's time is missing, not reused
AI4I_KEY = "UDI"
AI4I_FEATURES = ["Type", "Air temperature", "Process temperature", "Rotational speed", "Torque",
                 "Tool wear"]
AI4I_LABEL = "Machine failure"
AI4I_EPOCH = pd.Timestamp("2020-01-01", tz="UTC")  # record UDI is stamped UDI minutes after
MATERIALIZE_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # before any source's first stamp


@dataclass(frozen=True)
class View:
    """A feature view's entity: its name, join key and the key's type (``string``/``int64``)."""

    entity: str
    key: str
    key_type: str
    ttl: timedelta
    description: str


VIEWS = {
    ETTH1_VIEW: View("series", ENTITY_KEY, "string", TTL,
                     "hourly covariates of a series, stamped with the hour they were measured"),
    AI4I_VIEW: View("machine", AI4I_KEY, "int64", timedelta(0),
                    "an AI4I 2020 record's features, stamped AI4I_EPOCH + UDI minutes"),
}


class FeatureStoreError(ValueError):
    """A feature request the store cannot answer; the message names the entity or feature."""


@dataclass(frozen=True)
class FeatureStoreSettings:
    registry: str  # a path of Feast's file registry, or a SQLAlchemy URL of a SQL registry
    online: str  # a SQLite path, or postgresql://user:password@host:port/db
    sources: str  # artifact-store URL of the feature views' Parquet sources

    @classmethod
    def resolve(cls, home: TidemillHome) -> FeatureStoreSettings:
        folder = home.root / "feast"
        return cls(
            registry=os.environ.get(REGISTRY_ENV) or str(folder / "registry.db"),
            online=os.environ.get(ONLINE_ENV) or str(folder / "online.db"),
            sources=Settings.resolve(home).store.url("features"),
        )


def _online_config(url: str) -> dict[str, Any]:
    if not url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return {"type": "sqlite", "path": url}
    parts = urlparse(url)
    query = dict(parse_qsl(parts.query))
    return {"type": "postgres", "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432, "database": parts.path.lstrip("/"),
            "user": unquote(parts.username or ""), "password": unquote(parts.password or ""),
            "db_schema": "public", "sslmode": query.get("sslmode", "prefer")}  # fmt: skip


def _registry_config(url: str) -> Any:
    if "://" in url and not url.startswith(("s3://", "gs://", "file://")):
        return {"registry_type": "sql", "path": url, "cache_ttl_seconds": 60}
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
    return url


def _feast() -> ModuleType:
    """The ``feast`` package (with ``feast.types``), imported without its side effect on the
    environment: importing it sets ``PROMETHEUS_MULTIPROC_DIR`` and ``PROMETHEUS_MULTIPROCESS_DIR``
    in ``os.environ`` (feast/metrics.py), which every process started afterwards inherits, so two
    routers started by one such process would share one metrics folder."""
    before = {name: os.environ.get(name) for name in _FEAST_SETS}
    import feast
    import feast.types  # publish's feature types

    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
    return feast


def open_store(home: TidemillHome) -> FeatureStore:
    """Feast's ``FeatureStore`` on this deployment's registry and stores."""
    feast = _feast()
    settings = FeatureStoreSettings.resolve(home)
    config = feast.RepoConfig(
        project=PROJECT, provider="local", registry=_registry_config(settings.registry),
        online_store=_online_config(settings.online), offline_store={"type": "dask"},
        entity_key_serialization_version=3,
    )  # fmt: skip
    return feast.FeatureStore(config=config)


def etth1_source_frame(csv: str | Path) -> pd.DataFrame:
    """ETTh1's covariates in the feature view's layout (one row per series and hour)."""
    raw = pd.read_csv(csv, usecols=["date", *ETTH1_COVARIATES])
    return pd.DataFrame({
        ENTITY_KEY: "ETTh1",
        TIMESTAMP: pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
        **{c: raw[c].astype("float64") for c in ETTH1_COVARIATES},
    })  # fmt: skip


def ai4i_source_frame(csv: str | Path) -> pd.DataFrame:
    """AI4I 2020's records in the ``ai4i_machine`` layout: ``UDI``, its stamp, the features."""
    raw = pd.read_csv(csv, usecols=[AI4I_KEY, *AI4I_FEATURES], encoding="utf-8-sig")
    return pd.DataFrame({
        AI4I_KEY: raw[AI4I_KEY].astype("int64"),
        TIMESTAMP: ai4i_stamp(raw[AI4I_KEY]),
        **{c: raw[c].astype("str" if c == "Type" else "float64") for c in AI4I_FEATURES},
    })  # fmt: skip


def ai4i_stamp(udi: pd.Series) -> pd.Series:
    """The event time of AI4I record ``udi``: ``AI4I_EPOCH`` + ``udi`` minutes."""
    return AI4I_EPOCH + pd.to_timedelta(udi.astype("int64"), unit="min")


def ai4i_training_rows(csv: str | Path) -> pd.DataFrame:
    """The labelled events of AI4I (``UDI``, its stamp, ``Machine failure``): the entity rows a
    training set is retrieved for."""
    raw = pd.read_csv(csv, usecols=[AI4I_KEY, AI4I_LABEL], encoding="utf-8-sig")
    return pd.DataFrame({AI4I_KEY: raw[AI4I_KEY].astype("int64"),
                         TIMESTAMP: ai4i_stamp(raw[AI4I_KEY]), AI4I_LABEL: raw[AI4I_LABEL]})


_SOURCE_FRAMES = {ETTH1_VIEW: etth1_source_frame, AI4I_VIEW: ai4i_source_frame}


def _view(view: str) -> View:
    if view not in VIEWS:
        raise FeatureStoreError(f"no feature view {view!r}; known: {sorted(VIEWS)}")
    return VIEWS[view]


def publish(home: TidemillHome, frame: pd.DataFrame, view: str = ETTH1_VIEW) -> str:
    """Write a feature view's source (Parquet in the artifact store) and register the entity and
    the view in Feast's registry; returns the source URL. Text columns are ``String`` features,
    the rest ``Float64``."""
    feast = _feast()
    spec = _view(view)
    missing = [c for c in (spec.key, TIMESTAMP) if c not in frame.columns]
    if missing:
        raise FeatureStoreError(f"feature source for {view!r} lacks column(s) {missing}")
    features = [c for c in frame.columns if c not in (spec.key, TIMESTAMP)]
    url = artifact_store.join(FeatureStoreSettings.resolve(home).sources, f"{view}.parquet")
    artifact_store.write_parquet(frame, url)
    endpoint = None if artifact_store.is_local(url) else (
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    key_type = feast.ValueType.STRING if spec.key_type == "string" else feast.ValueType.INT64
    entity = feast.Entity(name=spec.entity, join_keys=[spec.key], value_type=key_type,
                          description=f"key of {view}")
    source = feast.FileSource(name=f"{view}_source", path=url, timestamp_field=TIMESTAMP,
                              s3_endpoint_override=endpoint)  # fmt: skip
    types = feast.types
    schema = [feast.Field(name=c, dtype=types.Float64 if frame[c].dtype.kind in "fiub"
                          else types.String) for c in features]  # fmt: skip
    feature_view = feast.FeatureView(name=view, entities=[entity], ttl=spec.ttl, source=source,
                                     online=True, schema=schema, description=spec.description)
    open_store(home).apply([entity, feature_view])
    return url


def historical_features(
    home: TidemillHome, rows: pd.DataFrame, features: Sequence[str], view: str = ETTH1_VIEW
) -> pd.DataFrame:
    """``rows`` (the view's key, ``event_timestamp``, anything else) with ``features`` joined
    point in time: each row gets the latest value stamped at or before its own time (within
    the view's TTL), never a later one; in the order of ``rows``."""
    missing = [c for c in (_view(view).key, TIMESTAMP) if c not in rows.columns]
    if missing:
        raise FeatureStoreError(f"training rows lack column(s) {missing}")
    keyed = rows.reset_index(drop=True).assign(__row__=lambda f: range(len(f)))
    keyed[TIMESTAMP] = pd.to_datetime(keyed[TIMESTAMP], utc=True)
    joined = open_store(home).get_historical_features(
        entity_df=keyed, features=[f"{view}:{f}" for f in features]).to_df()
    values = joined.set_index("__row__").reindex(keyed["__row__"])[list(features)]
    return pd.concat([rows.reset_index(drop=True), values.reset_index(drop=True)], axis=1)


def publish_csvs(home: TidemillHome, sources: Mapping[str, str | Path | None]) -> list[str]:
    """Publish each view's source CSV (``view -> path``; a view given no path is left as it
    is), a line per view; returns the source URLs."""
    urls = []
    for view, csv in sources.items():
        if not csv:
            continue
        _view(view)  # an unknown view is refused by name
        started = time.perf_counter()
        frame = _SOURCE_FRAMES[view](csv)
        urls.append(publish(home, frame, view))
        print(f"[tidemill] features: published {view} ({len(frame):,} rows of {csv}) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    return urls


def materialize_end(text: str | None) -> datetime:
    """The end of a materialisation: ``text`` (ISO; UTC when it names no zone), else now."""
    end = datetime.fromisoformat(text) if text else datetime.now(UTC)
    return end if end.tzinfo else end.replace(tzinfo=UTC)


def materialize(home: TidemillHome, start: datetime, end: datetime) -> dict[str, Any]:
    """Copy the values stamped in ``[start, end]`` of every registered view into the online
    store (the newest per entity wins), a view at a time with a line each."""
    store = open_store(home)
    views = sorted(v.name for v in store.list_feature_views())
    for i, view in enumerate(views, 1):
        started = time.perf_counter()
        store.materialize(start_date=start, end_date=end, feature_views=[view])
        print(f"[tidemill] features: materialised {view} ({i}/{len(views)}) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    print(f"[tidemill] features: materialised {views} from {start:%Y-%m-%d %H:%M} to "
          f"{end:%Y-%m-%d %H:%M} UTC", flush=True)
    return {"views": views, "start": start.isoformat(), "end": end.isoformat()}


def ai4i_training_set(home: TidemillHome, rows: pd.DataFrame) -> pd.DataFrame:
    """A tabular training set for AI4I: the labelled ``rows`` (``ai4i_training_rows``) with the
    ``ai4i_machine`` features as they stood at each row's time, in the columns the tabular
    pipeline takes (``UDI``, the features, ``Machine failure``)."""
    joined = historical_features(home, rows, AI4I_FEATURES, view=AI4I_VIEW)
    return joined[[AI4I_KEY, *AI4I_FEATURES, AI4I_LABEL]]


def online_features(
    home: TidemillHome, keys: Iterable[Any], features: Sequence[str], view: str = ETTH1_VIEW,
    store: FeatureStore | None = None,
) -> pd.DataFrame:
    """The online values of ``features`` for each key of the view's entity; an unknown key (no
    value in the online store) is a ``FeatureStoreError`` naming it."""
    keys = list(keys)
    key = _view(view).key
    store = store or open_store(home)
    found = store.get_online_features(features=[f"{view}:{f}" for f in features],
                                      entity_rows=[{key: k} for k in keys]).to_df()
    unknown = found.loc[found[list(features)].isna().all(axis=1), key].tolist()
    if unknown:
        raise FeatureStoreError(f"no online features of {view!r} for {key} {unknown}")
    return found


def serve(home: TidemillHome, host: str = "127.0.0.1", port: int = 6566) -> None:
    """Feast's feature server (what ``feast serve`` starts) on this deployment's registry and
    online store, in the foreground: ``POST /get-online-features``, ``GET /health``. Its one
    gunicorn worker is never recycled (Feast's default restarts it every ~1,000 requests, and
    lookups meanwhile wait seconds or fail with a 503)."""
    print(f"[tidemill] feature server on http://{host}:{port}", flush=True)
    open_store(home).serve(host=host, port=port, no_access_log=True, workers=1,
                           registry_ttl_sec=5, max_requests=0)
