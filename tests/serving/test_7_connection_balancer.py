"""The supervisor hands connections to the worker with the fewest open ones, in one process
with real sockets: readiness, hand-over, close reports, a worker that exits and its
replacement, a worker that dies before taking a connection it was handed. The live
stack's spread is in ``test_3_split``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from serving.connection_balancer import ConnectionBalancer, HandedConnections, listening_socket
from tests.serving.conftest import free_port


class _Echo(asyncio.Protocol):
    def __init__(self, served: list[asyncio.Transport]) -> None:
        self.served = served

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.served.append(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 2 s")


async def _connect(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` client connections, each echoed once (so its worker has set it up)."""
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writers.append(writer)
    return writers


async def _balance_scenario() -> None:
    loop = asyncio.get_running_loop()
    balancer = ConnectionBalancer(listening_socket("127.0.0.1", 0, 64), 2)
    port = balancer.listener.getsockname()[1]
    served: list[list[asyncio.Transport]] = [[], []]
    channels = [balancer.channel(w) for w in range(2)]
    balancer.start()
    # only worker 0 is ready: it takes the connections a starting worker 1 would get
    workers = [HandedConnections(channels[0], lambda: _Echo(served[0]), loop)]
    await _until(lambda: balancer.ready == [True, False])
    clients = await _connect(port, 2)
    assert [len(s) for s in served] == [2, 0]
    workers.append(HandedConnections(channels[1], lambda: _Echo(served[1]), loop))
    await _until(lambda: balancer.ready == [True, True])
    for writer in clients:
        writer.close()
    await _until(lambda: balancer.open == [0, 0])
    served[0].clear()
    clients += await _connect(port, 8)
    assert [len(s) for s in served] == [4, 4]
    assert balancer.open == [4, 4]

    for transport in served[0][:3]:  # three of worker 0's connections end
        transport.close()
    await _until(lambda: balancer.open == [1, 4])
    clients += await _connect(port, 3)  # ... and it gets the next three
    assert [len(s) for s in served] == [7, 4]
    assert balancer.open == [4, 4]

    workers[1].close()  # worker 1 exits: everything goes to worker 0
    await _until(lambda: balancer.open[1] == 0)
    clients += await _connect(port, 2)
    assert [len(s) for s in served] == [9, 4]

    replacement = balancer.channel(1)  # a restarted worker 1 is back in the rotation
    workers[1] = HandedConnections(replacement, lambda: _Echo(served[1]), loop)
    await _until(lambda: balancer.ready == [True, True])
    clients += await _connect(port, 2)
    assert [len(s) for s in served] == [9, 6]

    # a worker that dies before taking a connection off its channel: another one serves it
    stalled = balancer.channel(1)  # worker 1 restarted, says it is ready, then never reads
    workers[1].close()
    stalled.send(b"r")
    await _until(lambda: balancer.ready == [True, True])
    balancer.open[0] = 100  # so the next connection goes to worker 1
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clients.append(writer)
    await _until(lambda: balancer.open[1] == 1)
    stalled.close()
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"ping"
    assert [len(s) for s in served] == [10, 6]

    balancer.close()
    for worker in workers:
        worker.close()
    for writer in clients:
        writer.close()


def test_connections_go_to_the_least_busy_worker() -> None:
    asyncio.run(_balance_scenario())


def test_a_taken_port_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", taken.getsockname()[1], 16)
