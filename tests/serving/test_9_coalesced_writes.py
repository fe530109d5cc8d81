"""Writes made in one event-loop step leave together, on real sockets: the headers and body of
a response arrive in one piece, nothing is sent before the step ends, ``close`` sends what is
pending, ``abort`` drops it. The live stack serves every request through this transport
(``test_1_protocols`` and the rest)."""

from __future__ import annotations

import asyncio
import socket

from serving.coalesced_writes import CoalescedWrites


async def _pair() -> tuple[CoalescedWrites, socket.socket, asyncio.Transport]:
    """A transport on one end of a socket pair, wrapped; the other end as a plain socket."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    return CoalescedWrites(transport, loop), peer, transport


def _received(peer: socket.socket) -> list[bytes]:
    """Each ``recv`` the peer can make now, without waiting."""
    chunks = []
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return chunks
        if not chunk:
            return chunks
        chunks.append(chunk)


async def _one_step_scenario() -> None:
    wrapped, peer, transport = await _pair()
    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
    wrapped.write(b"body")
    assert _received(peer) == []  # nothing leaves before the step ends
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert _received(peer) == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"]
    assert wrapped.get_extra_info("socket") is transport.get_extra_info("socket")
    wrapped.write(b"second response")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert _received(peer) == [b"second response"]
    wrapped.close()
    peer.close()


async def _close_scenario() -> None:
    wrapped, peer, transport = await _pair()
    wrapped.write(b"last words")
    wrapped.close()  # before the step ends: still sent
    await asyncio.sleep(0.05)
    assert transport.is_closing()
    assert b"".join(_received(peer)) == b"last words"
    peer.close()

    wrapped, peer, transport = await _pair()
    wrapped.write(b"never sent")
    wrapped.abort()
    await asyncio.sleep(0.05)
    assert _received(peer) == []
    peer.close()


def test_writes_of_one_step_leave_together() -> None:
    asyncio.run(_one_step_scenario())


def test_close_sends_pending_writes_and_abort_drops_them() -> None:
    asyncio.run(_close_scenario())
