"""A TCP relay a test puts between a client and a real service, to stage an outage.

Outages are staged, never made: the machine's own PostgreSQL, RabbitMQ and
Redis keep running for everyone else; the test points its client at the
relay and cuts the relay instead.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class TcpProxy:
    """A TCP relay on 127.0.0.1 that can stop serving, to stage a database outage.

    While down it accepts and at once closes new connections (the client sees
    the server hang up) and cuts every relayed connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._up = False
        self._lock = threading.Lock()
        self._relayed: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def set_up(self, up: bool) -> None:
        """Serve (True) or refuse and cut every connection (False)."""
        with self._lock:
            self._up = up
            doomed = list(self._relayed) if not up else []
        for sock in doomed:
            self._close(sock)

    def stop(self) -> None:
        self._stopped.set()
        self.set_up(False)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                up = self._up
            if not up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._relayed.update((client, upstream))
            self._spawn(self._pipe, client, upstream)
            self._spawn(self._pipe, upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._relayed.discard(sock)
        # shutdown() wakes the relay thread blocked in recv(); close() alone does not.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
