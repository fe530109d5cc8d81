"""A worker process that dies is replaced: every request is answered meanwhile (the supervisor
hands new connections to the surviving worker) and the replacement takes its share once it is
ready. On a stack of its own (test_5 stopped the session stack)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.serving.conftest import ENDPOINT, Stack, start_stack, v1


def _call(stack: Stack, history: dict[str, Any], count: int
          ) -> tuple[list[http.client.HTTPConnection], list[int]]:
    """``count`` new kept-alive connections, one forecast request on each: their status codes."""
    address = urlsplit(stack.router)
    body = json.dumps(v1(history))
    conns, codes = [], []
    for _ in range(count):
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        conn.request("POST", f"/v1/models/{ENDPOINT}:predict", body=body,
                     headers={"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        conns.append(conn)
        codes.append(response.status)
    return conns, codes


def _holders(stack: Stack, conns: list[http.client.HTTPConnection]) -> list[int]:
    """The pid of the worker process holding each connection."""
    held_by = stack.router_connections()
    return [held_by[conn.sock.getsockname()[1]] for conn in conns]


def test_a_killed_worker_is_replaced_without_failed_requests(
    trained_home: Path, tmp_path: Path
) -> None:
    stack = start_stack(trained_home, 30, tmp_path / "stack.log")
    clients: list[http.client.HTTPConnection] = []
    try:
        history = httpx.get(f"{stack.router}/v1/models/{ENDPOINT}/example").json()[
            "instances"][0]
        clients, codes = _call(stack, history, 2)
        assert codes == [200, 200]
        first = _holders(stack, clients)
        assert len(set(first)) == 2, first  # one connection each
        killed, survivor = first
        os.kill(killed, signal.SIGKILL)

        replaced = None
        deadline = time.monotonic() + 120
        while replaced is None and time.monotonic() < deadline:
            batch, codes = _call(stack, history, 2)
            clients += batch
            assert codes == [200, 200]  # nothing fails while the worker is replaced
            holders = set(_holders(stack, batch))
            assert killed not in holders
            if len(holders) == 2:
                replaced = (holders - {survivor}).pop()
            else:
                time.sleep(0.5)
        assert replaced is not None, "no replacement worker took connections in 120 s"
        assert "died; started" in (tmp_path / "stack.log").read_text()
    finally:
        for client in clients:
            client.close()
        assert stack.stop() == 0
