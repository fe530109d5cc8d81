"""Connections spread over worker processes by their supervisor, the least busy worker first.

With ``SO_REUSEPORT`` the kernel hashes each connection to one worker's socket: 8 connections
on 2 workers land 4/4 only about a quarter of the time, and when they land 6/2 the busier
worker's clients wait three times as long as the others. Workers sharing one listening socket
race for each connection instead, and one may take most of a burst. Here the supervisor
accepts every connection itself and passes it (``SCM_RIGHTS`` over a ``SOCK_SEQPACKET`` socket
pair, the way Node.js' cluster module hands connections to its workers) to the worker with the
fewest open connections. A worker says when it is ready to serve (until then a restarted
worker gets no connections while another is up), when it has taken connections off its
channel, and when it closes one. The supervisor keeps its copy of each connection until the
worker has taken it: a worker that dies with connections still in its channel does not lose
them, they go to another worker. The hop costs one ``sendmsg`` per connection and a message
back, none per request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Callable

from serving.coalesced_writes import CoalescedWrites

log = logging.getLogger(__name__)

_READY, _TAKEN, _CLOSED = b"r", b"t", b"x"  # what workers report (one _TAKEN per connection)


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port`` (``OSError`` when it is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class ConnectionBalancer:
    """In the supervisor: accepts on ``listener`` and hands each connection to a worker."""

    def __init__(self, listener: socket.socket, workers: int) -> None:
        self.listener = listener
        self.open = [0] * workers  # connections each worker holds, as far as it has reported
        self.ready = [False] * workers
        # connections handed to each worker and not yet taken off its channel
        self._pending: list[collections.deque[socket.socket]] = [
            collections.deque() for _ in range(workers)]
        self._channels: list[socket.socket | None] = [None] * workers
        self._loop: asyncio.AbstractEventLoop | None = None

    def channel(self, worker: int) -> socket.socket:
        """A new channel for ``worker`` (replacing its last one): the returned end is the
        worker's, to pass to its process and then close here."""
        orphans = self._lose(worker)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._channels[worker] = ours
        if self._loop is not None:
            self._loop.add_reader(ours, self._reports, worker)
        for conn in orphans:
            self._hand_over(conn)
        return theirs

    def start(self) -> None:
        """Start accepting in the running event loop."""
        self._loop = asyncio.get_running_loop()
        for worker, channel in enumerate(self._channels):
            if channel is not None:
                self._loop.add_reader(channel, self._reports, worker)
        self._loop.add_reader(self.listener, self._accept)

    def close(self) -> None:
        """Stop accepting; connections already handed over stay with their workers."""
        if self._loop is not None:
            self._loop.remove_reader(self.listener)
        self.listener.close()
        for worker in range(len(self._channels)):
            for conn in self._lose(worker):
                conn.close()

    def _lose(self, worker: int) -> list[socket.socket]:
        """Close ``worker``'s channel and forget its counts; return the connections it was
        handed and had not taken (they are still ours)."""
        channel = self._channels[worker]
        if channel is not None:
            if self._loop is not None:
                self._loop.remove_reader(channel)
            channel.close()
            self._channels[worker] = None
        self.open[worker] = 0
        self.ready[worker] = False
        pending = list(self._pending[worker])
        self._pending[worker].clear()
        return pending

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of file descriptors, say: the rest wait in the queue
                log.warning("accept failed: %s", exc)
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        """Send ``conn`` to a worker and keep it until taken (or close it: nobody is up)."""
        # ready workers first, the least busy first; one starting up only when none is ready
        order = sorted(range(len(self.open)), key=lambda w: (not self.ready[w], self.open[w]))
        for worker in order:
            channel = self._channels[worker]
            if channel is None:
                continue
            try:
                socket.send_fds(channel, [b"c"], [conn.fileno()])
            except OSError:  # that worker is gone or not reading: try the next one
                continue
            self.open[worker] += 1
            self._pending[worker].append(conn)
            return
        log.warning("no worker took a connection: closed")
        conn.close()

    def _reports(self, worker: int) -> None:
        channel = self._channels[worker]
        while channel is not None:
            try:
                message = channel.recv(16)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:  # the worker exited: what it served went with it, what it had
                for conn in self._lose(worker):  # not taken is handed to another
                    self._hand_over(conn)
                return
            if message == _READY:
                self.ready[worker] = True
            elif message[:1] == _TAKEN:
                for _ in range(min(len(message), len(self._pending[worker]))):
                    self._pending[worker].popleft().close()
            else:
                self.open[worker] = max(0, self.open[worker] - 1)


class HandedConnections:
    """In a worker: serves every connection arriving on ``channel`` with a protocol from
    ``factory`` (uvicorn's), through a transport that sends each event-loop step's writes at
    once (``CoalescedWrites``), and tells the supervisor when each one closes."""

    def __init__(self, channel: socket.socket, factory: Callable[[], asyncio.Protocol],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.channel = channel
        self.factory = factory
        self.loop = loop
        channel.setblocking(False)
        loop.add_reader(channel, self._receive)
        self._report(_READY)

    def close(self) -> None:
        """Take no more connections (the open ones are served to the end)."""
        if self.channel.fileno() >= 0:
            self.loop.remove_reader(self.channel)
            self.channel.close()

    def _receive(self) -> None:
        while True:
            try:
                # one connection per message (SOCK_SEQPACKET keeps them apart)
                message, fds, _, _ = socket.recv_fds(self.channel, 16, 1)
            except BlockingIOError:
                return
            if not message and not fds:  # the supervisor is gone
                self.close()
                return
            if fds:
                self._report(_TAKEN * len(fds))
            for fd in fds:
                self.loop.create_task(self._serve(socket.socket(fileno=fd)))

    async def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            await self.loop.connect_accepted_socket(self._protocol, sock)
        except OSError:  # closed by the client before it was set up
            sock.close()
            self._report(_CLOSED)

    def _protocol(self) -> asyncio.Protocol:
        protocol = self.factory()
        made, lost = protocol.connection_made, protocol.connection_lost

        def connection_made(transport: asyncio.BaseTransport) -> None:
            made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]

        def connection_lost(exc: Exception | None) -> None:
            lost(exc)
            self._report(_CLOSED)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    def _report(self, message: bytes) -> None:
        # OSError: the supervisor is gone or shutting down, and nobody counts any more
        with contextlib.suppress(OSError):
            self.channel.send(message)
