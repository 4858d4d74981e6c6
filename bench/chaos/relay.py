"""A TCP relay on 127.0.0.1 that can cut a service off and bring it back.

An outage of PostgreSQL, RabbitMQ or Redis is staged without touching the
service itself (which other programs on the machine share): the processes
under test are given the relay's port instead of the service's, and the relay
is cut. While cut it closes every relayed connection (both ends see a reset
or end of stream, as when a server dies) and closes each new connection as
soon as it is accepted (as a server that is restarting); restored, it relays
new connections again. Connections are not resumed: the clients must
reconnect, which is what the chaos suite measures.

The relay is generic (any host and port), runs in daemon threads of the
calling process, and is a context manager::

    with TcpRelay("127.0.0.1", 5672) as relay:
        url = f"amqp://guest:guest@127.0.0.1:{relay.port}//"
        ...
        relay.cut()
        relay.restore()
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

# How often the accept loop looks at whether it should stop.
ACCEPT_POLL_S = 0.05
CONNECT_TIMEOUT_S = 5.0
CHUNK = 65536


class TcpRelay:
    """Relay connections from ``127.0.0.1:<port>`` to ``host:port_upstream``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._up = True
        self._lock = threading.Lock()
        self._relayed: set[socket.socket] = set()
        self._stopped = threading.Event()
        self.connections = 0  # relayed since the start
        self.refused = 0  # closed at once while cut
        self._accepter = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._accepter.start()

    @property
    def up(self) -> bool:
        with self._lock:
            return self._up

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            self._up = False
            doomed = list(self._relayed)
        for sock in doomed:
            self._close(sock)

    def restore(self) -> None:
        """Relay new connections again."""
        with self._lock:
            self._up = True

    def stop(self) -> None:
        """Cut everything and stop listening (the port is released)."""
        self._stopped.set()
        self.cut()
        self._accepter.join(5)
        self._listener.close()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            if not self.up:
                self.refused += 1
                self._hang_up(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                self._hang_up(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if not self._up:  # cut while we were connecting
                    self._hang_up(client)
                    self._hang_up(upstream)
                    continue
                self._relayed.update((client, upstream))
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pipe, args=(source, sink), name="relay-pipe", daemon=True
                ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._relayed.discard(sock)
        self._hang_up(sock)

    @staticmethod
    def _hang_up(sock: socket.socket) -> None:
        # shutdown() wakes a relay thread blocked in recv(); close() alone does not.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
