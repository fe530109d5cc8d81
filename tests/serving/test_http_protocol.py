"""``BodyBufferingProtocol`` reads request bodies up to 256 KiB without pausing the socket,
pauses for larger ones as uvicorn does, and hands the app the whole body either way."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from serving.http_protocol import BODY_HIGH_WATER, BodyBufferingProtocol


async def _post(size: int) -> tuple[bool, int]:
    """Whether the connection still reads once a POST of ``size`` body bytes has arrived (the
    app not yet run), and the body length the app then receives."""
    received: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(len(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, http=BodyBufferingProtocol, lifespan="off", log_level="error")
    config.load()
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    protocol = BodyBufferingProtocol(config=config, server_state=ServerState(), app_state={},
                                     _loop=loop)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
    request = (f"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {size}\r\n\r\n".encode()
               + b"x" * size)
    protocol.data_received(request)  # all of it in one read, as a loopback client's body
    reading = transport.is_reading()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if received:
            break
    transport.close()
    theirs.close()
    return reading, received[0]


def test_bodies_up_to_the_mark_are_read_without_a_pause() -> None:
    assert asyncio.run(_post(106_000)) == (True, 106_000)
    assert asyncio.run(_post(BODY_HIGH_WATER)) == (True, BODY_HIGH_WATER)


def test_larger_bodies_pause_reading_until_the_app_takes_them() -> None:
    assert asyncio.run(_post(BODY_HIGH_WATER + 1)) == (False, BODY_HIGH_WATER + 1)
