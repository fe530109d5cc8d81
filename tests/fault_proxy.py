"""A real TCP proxy on loopback that cuts the line at a chosen HTTP request.

It forwards HTTP/1.1 requests to a real server (keep-alive connections, Content-Length or
chunked bodies). When the server has answered a request whose head starts with ``trigger``,
the proxy goes down: with ``deliver=False`` the answer is dropped (the server committed, the
client never learns it); with ``deliver=True`` the answer reaches the client first. While down,
every open and new connection is closed without an answer, as when the server dies; ``heal()``
brings it back (the trigger is spent).
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.servers import free_port


def _read_head(stream) -> bytes | None:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline(65536)
        if not line:
            return None
        head += line
    return head


def _read_body(stream, head: bytes) -> bytes:
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size_line = stream.readline(65536)
            body += size_line
            size = int(size_line.split(b";")[0], 16)
            body += stream.read(size + 2)  # the chunk and its CRLF
            if size == 0:
                return body
    return stream.read(int(fields.get(b"content-length", b"0")))


def _read_message(stream) -> bytes | None:
    head = _read_head(stream)
    return None if head is None else head + _read_body(stream, head)


class CuttingProxy:
    """``url`` is the proxy's address; ``cut`` is set once it went down."""

    def __init__(self, upstream_port: int, trigger: bytes, deliver: bool) -> None:
        self.upstream_port = upstream_port
        self.trigger = trigger
        self.deliver = deliver
        self.cut = threading.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def heal(self) -> None:
        self.trigger = b"\0never"
        self.cut.clear()

    def close(self) -> None:
        self._listener.close()
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        with self._lock:
            self._open |= {client, upstream}
        from_client, from_upstream = client.makefile("rb"), upstream.makefile("rb")
        try:
            while not self.cut.is_set():
                request = _read_message(from_client)
                if request is None or self.cut.is_set():
                    return
                upstream.sendall(request)
                answer = _read_message(from_upstream)
                if answer is None:
                    return
                matched = request.startswith(self.trigger)
                if matched and not self.deliver:
                    self.cut.set()
                    return
                client.sendall(answer)
                if matched:
                    self.cut.set()
                    return
        except (OSError, ValueError):  # the line was cut under this connection
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._open -= {client, upstream}
            if self.cut.is_set():
                self._drop_all()
