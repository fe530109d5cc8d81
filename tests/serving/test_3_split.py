"""Champion/challenger split: proportions over many caller keys, stickiness, the hash; and
connections spread evenly over the stack's two worker processes.

The numbered files run in order on one session stack: protocols, bad input and the split see
the initial 70/30 split; control changes it; the prediction-log test stops the stack.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from serving.router import BUCKETS, bucket_of, variant_for
from tests.serving.conftest import ENDPOINT, Stack, v1


def test_hash_split_proportions_and_monotonicity() -> None:
    keys = [f"user-{i}" for i in range(20_000)]
    for percent in (1, 10, 30, 50, 90):
        share = sum(variant_for(k, percent) == "challenger" for k in keys) / len(keys)
        assert abs(share - percent / 100) < 0.015, (percent, share)
    assert all(variant_for(k, 0) == "champion" for k in keys[:500])
    assert all(variant_for(k, 100) == "challenger" for k in keys[:500])
    # raising the percent only moves champion callers over, never back
    at_10 = {k for k in keys if variant_for(k, 10) == "challenger"}
    at_30 = {k for k in keys if variant_for(k, 30) == "challenger"}
    assert at_10 <= at_30
    assert all(0 <= bucket_of(k) < BUCKETS for k in keys[:100])


def test_live_split_proportions(stack: Stack, client: httpx.Client,
                                history: dict[str, Any]) -> None:
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"
    served = {}
    for i in range(300):
        key = f"caller-{i}"
        body = client.post(url, json=v1(history, user_id=key)).json()
        served[key] = (body["variant"], body["model_version"])
    share = sum(v == "challenger" for v, _ in served.values()) / len(served)
    assert 0.2 < share < 0.4, share
    assert all(variant_for(k, 30) == v for k, (v, _) in served.items())
    assert {ver for v, ver in served.values() if v == "champion"} == {"1"}
    assert {ver for v, ver in served.values() if v == "challenger"} == {"2"}


def test_sticky_across_connections_and_workers(stack: Stack, history: dict[str, Any]) -> None:
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"
    for key in ("sticky-a", "sticky-b", "sticky-c", "sticky-d"):
        seen = {httpx.post(url, json=v1(history, user_id=key)).json()["variant"]
                for _ in range(6)}  # a new connection each time: both workers answer
        assert seen == {variant_for(key, 30)}


def test_live_stack_spreads_connections_evenly(stack: Stack, history: dict[str, Any]) -> None:
    url = f"{stack.router}/v1/models/{ENDPOINT}:predict"
    clients = [httpx.Client(timeout=30.0) for _ in range(8)]
    try:
        for client in clients:  # kept alive: each stays on the worker it was handed to
            assert client.post(url, json=v1(history)).status_code == 200
        per_worker = list(Counter(stack.router_connections().values()).values())
        # other tests' keep-alive clients count too: at least our 8, never more than 1 apart
        assert len(per_worker) == 2 and sum(per_worker) >= 8, per_worker
        assert max(per_worker) - min(per_worker) <= 1, per_worker
    finally:
        for client in clients:
            client.close()
