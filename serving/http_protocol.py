"""Uvicorn's httptools protocol, buffering request bodies up to 256 KiB before it pauses the
socket.

Uvicorn stops reading a connection once 64 KiB of a request body wait for the app, and reads
again when the app asks for the body. A batch-100 V1 request (~106 kB) arrives in one read,
so every one paid for a pause and a resume: two ``epoll_ctl`` calls and asyncio's selector
bookkeeping, ~12 us of a ~1.4 ms request. With the mark at 256 KiB (batch ~240) they are
read without pausing; larger bodies pause as before, and a connection buffers at most 256 KiB
before it does (the forecast routes refuse bodies over ``TIDEMILL_MAX_BODY_BYTES`` by their
declared length before reading them).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

BODY_HIGH_WATER = 256 * 1024


class BodyBufferingProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with ``BODY_HIGH_WATER`` instead of uvicorn's 64 KiB mark."""

    def on_body(self, body: bytes) -> None:  # uvicorn 0.54's, with the other mark
        if (self.parser.should_upgrade() and self._should_upgrade()) or \
                self.cycle.response_complete:
            return
        self.cycle.body += body
        if len(self.cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        self.cycle.message_event.set()
