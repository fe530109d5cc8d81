"""The feature store: Feast, configured from Tidemill's settings, with Tidemill's feature views.

Locally everything sits in the home (``<home>/feast``: the file registry, the SQLite online
store) and the offline store is Feast's file (Dask) store over Parquet in the artifact store.
On Kubernetes ``TIDEMILL_FEAST_REGISTRY_URL`` (a SQL registry, e.g. PostgreSQL) and
``TIDEMILL_FEAST_ONLINE_URL`` (``postgresql://user:password@host:port/db``, ``?sslmode=``
as libpq, default ``prefer``) point every pod at
the same registry and online store; nothing is local.

Feature views:

- ``etth1_covariates`` (entity ``series``, key ``series_id``): the six load measurements of
  ETTh1 (HUFL ... LULL) per hour, the "weather-like" covariates of a forecast, stamped with
  the hour they were measured.

Training sets come from ``historical_features`` (Feast's point-in-time join: each row gets
the latest value stamped at or before its own time, never a later one); ``materialize``
copies the newest values into the online store, which ``online_features`` reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlparse

import pandas as pd

from pipelines import artifact_store
from pipelines.home import TidemillHome
from pipelines.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

REGISTRY_ENV = "TIDEMILL_FEAST_REGISTRY_URL"
ONLINE_ENV = "TIDEMILL_FEAST_ONLINE_URL"
PROJECT = "tidemill"
ENTITY_KEY = "series_id"
TIMESTAMP = "event_timestamp"
ETTH1_COVARIATES = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]
ETTH1_VIEW = "etth1_covariates"
TTL = timedelta(days=2)  # a covariate older than this at a row's time is missing, not reused


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


def open_store(home: TidemillHome) -> FeatureStore:
    """Feast's ``FeatureStore`` on this deployment's registry and stores."""
    from feast import FeatureStore, RepoConfig

    settings = FeatureStoreSettings.resolve(home)
    config = RepoConfig(
        project=PROJECT, provider="local", registry=_registry_config(settings.registry),
        online_store=_online_config(settings.online), offline_store={"type": "dask"},
        entity_key_serialization_version=3,
    )  # fmt: skip
    return FeatureStore(config=config)


def etth1_source_frame(csv: str | Path) -> pd.DataFrame:
    """ETTh1's covariates in the feature view's layout (one row per series and hour)."""
    raw = pd.read_csv(csv, usecols=["date", *ETTH1_COVARIATES])
    return pd.DataFrame({
        ENTITY_KEY: "ETTh1",
        TIMESTAMP: pd.to_datetime(raw["date"]).dt.tz_localize("UTC"),
        **{c: raw[c].astype("float64") for c in ETTH1_COVARIATES},
    })  # fmt: skip


def publish(home: TidemillHome, frame: pd.DataFrame, view: str = ETTH1_VIEW) -> str:
    """Write a feature view's source (Parquet in the artifact store) and register the entity and
    the view in Feast's registry; returns the source URL."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    missing = [c for c in (ENTITY_KEY, TIMESTAMP) if c not in frame.columns]
    if missing:
        raise FeatureStoreError(f"feature source for {view!r} lacks column(s) {missing}")
    features = [c for c in frame.columns if c not in (ENTITY_KEY, TIMESTAMP)]
    url = artifact_store.join(FeatureStoreSettings.resolve(home).sources, f"{view}.parquet")
    artifact_store.write_parquet(frame, url)
    endpoint = None if artifact_store.is_local(url) else (
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    series = Entity(name="series", join_keys=[ENTITY_KEY], value_type=ValueType.STRING,
                    description="one time series")
    source = FileSource(name=f"{view}_source", path=url, timestamp_field=TIMESTAMP,
                        s3_endpoint_override=endpoint)  # fmt: skip
    feature_view = FeatureView(
        name=view, entities=[series], ttl=TTL, source=source, online=True,
        schema=[Field(name=c, dtype=Float64) for c in features],
        description="hourly covariates of a series, stamped with the hour they were measured",
    )  # fmt: skip
    open_store(home).apply([series, feature_view])
    return url


def historical_features(
    home: TidemillHome, rows: pd.DataFrame, features: Sequence[str], view: str = ETTH1_VIEW
) -> pd.DataFrame:
    """``rows`` (``series_id``, ``event_timestamp``, anything else) with ``features`` joined
    point in time: each row gets the latest value stamped at or before its own time (within
    the view's TTL), never a later one; in the order of ``rows``."""
    missing = [c for c in (ENTITY_KEY, TIMESTAMP) if c not in rows.columns]
    if missing:
        raise FeatureStoreError(f"training rows lack column(s) {missing}")
    keyed = rows.reset_index(drop=True).assign(__row__=lambda f: range(len(f)))
    keyed[TIMESTAMP] = pd.to_datetime(keyed[TIMESTAMP], utc=True)
    joined = open_store(home).get_historical_features(
        entity_df=keyed, features=[f"{view}:{f}" for f in features]).to_df()
    values = joined.set_index("__row__").reindex(keyed["__row__"])[list(features)]
    return pd.concat([rows.reset_index(drop=True), values.reset_index(drop=True)], axis=1)


def materialize(home: TidemillHome, start: datetime, end: datetime) -> dict[str, Any]:
    """Copy the values stamped in ``[start, end]`` into the online store (the newest per
    entity wins)."""
    store = open_store(home)
    store.materialize(start_date=start, end_date=end)
    views = [v.name for v in store.list_feature_views()]
    print(f"[tidemill] features: materialised {views} from {start:%Y-%m-%d %H:%M} to "
          f"{end:%Y-%m-%d %H:%M} UTC", flush=True)
    return {"views": views, "start": start.isoformat(), "end": end.isoformat()}


def online_features(
    home: TidemillHome, keys: Iterable[str], features: Sequence[str], view: str = ETTH1_VIEW,
    store: FeatureStore | None = None,
) -> pd.DataFrame:
    """The online values of ``features`` for each series key; an unknown key (no value in the
    online store) is a ``FeatureStoreError`` naming it."""
    keys = list(keys)
    store = store or open_store(home)
    found = store.get_online_features(features=[f"{view}:{f}" for f in features],
                                      entity_rows=[{ENTITY_KEY: k} for k in keys]).to_df()
    unknown = found.loc[found[list(features)].isna().all(axis=1), ENTITY_KEY].tolist()
    if unknown:
        raise FeatureStoreError(f"no online features of {view!r} for {ENTITY_KEY} {unknown}")
    return found
