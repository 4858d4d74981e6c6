"""A TCP relay of a test's own, between a client and a real service, to stage outages.

The machine's services are never stopped: a test points its client at the
relay and cuts the relay instead. Two kinds of fault:

* :meth:`TcpRelay.set_up` ``(False)``: the service is gone. Every relayed
  connection is closed (both ends hear it) and new ones are accepted and
  closed at once, until ``set_up(True)``.
* :meth:`TcpRelay.freeze`: the path died silently (a half-open connection).
  The relayed connections stay open but carry nothing more, in either
  direction, and no end hears of a close; new connections are relayed as usual.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable


class _Pair:
    """One relayed connection: the client's socket and the service's."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self.frozen = threading.Event()


class TcpRelay:
    """A TCP relay on 127.0.0.1 (a port of its own) to ``host:port``; serving from the start."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._up = True
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._frozen: list[_Pair] = []
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0  # relayed so far
        self.refused = 0  # hung up on while cut
        self._spawn(self._accept)

    def url_of(self, url: str) -> str:
        """``url`` (of the relayed service) pointing at the relay instead."""
        host, port = self._target
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def set_up(self, up: bool) -> None:
        """Serve (True), or cut every connection and refuse new ones (False)."""
        with self._lock:
            self._up = up
            doomed = list(self._pairs) if not up else []
            if not up:
                self._pairs.clear()
        for pair in doomed:
            for sock in pair.sockets:
                _close(sock)

    @property
    def up(self) -> bool:
        """Whether the relay serves (not cut)."""
        with self._lock:
            return self._up

    def cut(self) -> None:
        """Close every relayed connection and refuse new ones until :meth:`restore`."""
        self.set_up(False)

    def restore(self) -> None:
        """Relay new connections again."""
        self.set_up(True)

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def freeze(self) -> None:
        """Let every current connection go silent without a close (half-open)."""
        with self._lock:
            frozen = list(self._pairs)
            self._pairs.clear()  # no longer relayed; closed at stop()
            self._frozen.extend(frozen)
        for pair in frozen:
            pair.frozen.set()

    def stop(self) -> None:
        """Close everything, frozen connections included."""
        self._stopped.set()
        self.set_up(False)
        for pair in self._frozen:
            for sock in pair.sockets:
                _close(sock)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

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
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            with self._lock:
                if not self._up:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    continue
                self._pairs.add(pair)
                self.connections += 1
            self._spawn(self._pipe, pair, client, upstream)
            self._spawn(self._pipe, pair, upstream, client)

    def _pipe(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not pair.frozen.is_set():
                    sink.sendall(data)
        except OSError:
            pass
        if pair.frozen.is_set():
            return  # half-open: neither end hears of the other's close
        with self._lock:
            self._pairs.discard(pair)
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    # shutdown() wakes the relay thread blocked in recv(); close() alone does not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
