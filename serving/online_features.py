"""Tabular requests by entity key: the feature vector comes from Feast's feature server.

Feast cannot live in the serving environment (its uvicorn and psutil pins clash with
kserve's), so the router asks the feature server (``tidemill features serve``, the
orchestrator environment's Feast) over HTTP: one ``POST /get-online-features`` per request
for all of its entities, on one pooled ``aiohttp.ClientSession`` per worker process
(kept-alive connections; about 0.6 ms a call less than httpx's client, bench/RESULTS.md) with
a short timeout (``serving.config.FeatureLookup``). The features asked for are those of the
live tabular versions; each version then takes its own.

Answers: an entity the online store does not hold is a 404 naming the key and the value; the
feature server unreachable or timing out is a 503 naming it; any other answer of it is a 502
quoting it. Nothing is predicted or logged for any of them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pandas as pd

from serving.config import FeatureLookup
from serving.protocol import RequestError

if TYPE_CHECKING:
    from serving.forecast_model import ForecastModel
    from serving.tabular_model import TabularRequest

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_lookup: FeatureLookup | None = None
_session: aiohttp.ClientSession | None = None
_JSON = {"content-type": "application/json"}


def lookup() -> FeatureLookup | None:
    """The configured lookup (read once per process), None when entity lookup is off."""
    global _lookup
    if _lookup is None:
        _lookup = FeatureLookup.from_env()
    return _lookup


def _http(config: FeatureLookup) -> aiohttp.ClientSession:
    global _session
    if _session is None:  # one per worker process, created in its event loop
        _session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=config.timeout_s),
            connector=aiohttp.TCPConnector(limit=64))
    return _session


async def close() -> None:
    """Close this worker's connections to the feature server (at shutdown)."""
    global _session
    if _session is not None:
        await _session.close()
        _session = None


def model_features(model: ForecastModel) -> tuple[list[str], set[str]]:
    """The features of the live tabular versions (in order, each once) and which are text."""
    names: dict[str, None] = {}
    text: set[str] = set()
    for served in model.live().values():
        meta = getattr(getattr(served, "bundle", None), "meta", None)
        if meta is not None:
            names.update(dict.fromkeys([*meta["numeric"], *meta["categorical"]]))
            text.update(meta["categorical"])
    return list(names), text


async def fetch(config: FeatureLookup, keys: list[Any], features: list[str], text: set[str],
                field: str) -> pd.DataFrame:
    """The online values of ``features`` for ``keys``, one row per key, in order."""
    body = {"entities": {config.key: keys}, "features": [f"{config.view}:{f}" for f in features]}
    where = f"feature server {config.url}"
    try:
        async with _http(config).post(f"{config.url}/get-online-features",
                                      data=orjson.dumps(body), headers=_JSON) as response:
            status, content = response.status, await response.read()
    except TimeoutError as exc:
        raise RequestError(field, f"{where} did not answer within {config.timeout_s:g} s "
                                  f"({type(exc).__name__})", 503, "feature_server_down") from exc
    except aiohttp.ClientError as exc:
        raise RequestError(field, f"{where} is unreachable ({type(exc).__name__}: {exc})", 503,
                           "feature_server_down") from exc
    if status != 200:
        raise RequestError(field, f"{where} answered {status}: "
                                  f"{content[:300].decode(errors='replace')}", 502,
                           "feature_server_error")
    answer = orjson.loads(content)
    columns = dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))
    unknown = [k for i, k in enumerate(keys)
               if all(columns[f]["statuses"][i] == "NOT_FOUND" for f in features)]
    if unknown:
        raise RequestError(f"{field}.{config.key}", f"no online features of {config.view!r} "
                           f"for {config.key} {unknown}", 404, "unknown_entity")
    return pd.DataFrame({
        f: columns[f]["values"] if f in text else
        [_NON_FINITE.get(v, v) if isinstance(v, str) else v for v in columns[f]["values"]]
        for f in features
    })  # fmt: skip


async def resolve(model: ForecastModel, request: TabularRequest) -> None:
    """Fill ``request.frame`` from the feature server when the request sent entity keys."""
    if request.entities is None:
        return
    config = lookup()
    assert config is not None  # the parser refuses entities when lookup is off
    features, text = model_features(model)
    request.frame = await fetch(config, request.entities, features, text,
                                request.entity_field)
