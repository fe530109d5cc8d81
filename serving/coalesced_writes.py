"""A transport that sends the writes of one event-loop step together.

Uvicorn writes a response in two calls, the status line and headers, then the body, and
asyncio sends each at once: two ``send`` system calls, two TCP segments and two wake-ups of
the client for every response. The headers' ``send`` was the costlier one (on loopback the
sender also runs the receiver's side of TCP and wakes it): ~9% of a worker's time at batch
100. Wrapped in ``CoalescedWrites``, the writes made while one callback runs are joined and
sent once, by a callback the loop runs next (before any I/O it polls then).
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescedWrites:
    """``transport`` as its protocol sees it, with writes joined per event-loop step. Every
    other attribute is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Send what is pending, then close (as asyncio's transports do with their buffer)."""
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
