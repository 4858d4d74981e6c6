"""The TCP relay tests and the chaos suite stage outages with: relays, cuts, refuses, restores."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.relay import TcpRelay

TIMEOUT_S = 5.0


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A local server that echoes every byte back, on a free port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stopped = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve() -> None:
        while not stopped.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stopped.set()
    thread.join(TIMEOUT_S)
    server.close()


def _connect(relay: TcpRelay) -> socket.socket:
    return socket.create_connection(("127.0.0.1", relay.port), timeout=TIMEOUT_S)


def _round_trip(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    return conn.recv(4096)


def test_relay_passes_bytes_through_until_cut_then_again_once_restored(echo_port: int) -> None:
    with TcpRelay("127.0.0.1", echo_port) as relay:
        # Given a connection through the relay that works
        conn = _connect(relay)
        assert _round_trip(conn, b"before") == b"before"
        # When the relay is cut, that connection ends
        relay.cut()
        with contextlib.suppress(OSError):
            conn.sendall(b"during")
        assert conn.recv(4096) == b""
        conn.close()
        # And a new connection is hung up on at once, and counted as refused
        refused = _connect(relay)
        with contextlib.suppress(OSError):
            refused.sendall(b"during")
        assert refused.recv(4096) == b""
        refused.close()
        assert relay.refused == 1
        # When it is restored, new connections are relayed again
        relay.restore()
        again = _connect(relay)
        assert _round_trip(again, b"after") == b"after"
        again.close()
        assert relay.connections == 2


def test_a_stopped_relay_releases_its_port(echo_port: int) -> None:
    relay = TcpRelay("127.0.0.1", echo_port)
    port = relay.port
    relay.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
