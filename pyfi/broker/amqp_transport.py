"""kombu's py-amqp transport, reading the socket in large chunks.

py-amqp reads each frame with three ``recv`` calls of exactly the bytes it
needs (header, payload, end octet), and wraps each frame read in a change of
the socket's timeout, two more system calls. A delivered message is three
frames, so a consuming worker made about fifteen system calls per message
before any of its own work. Here the socket is read 64 KiB at a time and
frames are cut from that buffer; a frame that is already buffered is taken
without touching the socket (or its timeout) at all. Under load one ``recv``
brings dozens of messages.

Writes can be held back the same way (:meth:`BufferedTCPTransport.corked`):
publishing a batch of messages is then one ``sendall`` instead of one each.

Only plain TCP connections are changed; TLS connections keep py-amqp's own
transport (its SSL reads have their own buffering).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from struct import unpack_from
from typing import Any

from amqp import transport as amqp_transport
from amqp.exceptions import UnexpectedFrame
from kombu.transport import pyamqp

from pyfi.limits import hold_compression

CHUNK = 65536
_HEADER = 7  # type (1), channel (2), size (4)
_FRAME_END = 0xCE
_NOTHING_YET = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})


class BufferedTCPTransport(amqp_transport.TCPTransport):  # type: ignore[misc]
    """A TCP transport whose reads are served from one large receive buffer."""

    _buffer = b""
    _offset = 0
    _held: list[bytes] | None = None

    def _setup_transport(self) -> None:
        super()._setup_transport()
        self._buffer, self._offset = b"", 0
        self._held = None

    def write(self, s: Any) -> None:
        """Send ``s``, or hold a copy of it while :meth:`corked`."""
        if self._held is None:
            super().write(s)
        else:
            self._held.append(bytes(s))  # py-amqp reuses the buffer s views

    @contextmanager
    def corked(self) -> Iterator[None]:
        """Hold every write back until the block ends, then send them as one.

        What was held is sent even when the block raises, as it would have
        been without the cork.
        """
        if self._held is not None:  # already corked further up
            yield
            return
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                super().write(b"".join(held))

    def frame_ready(self) -> bool:
        """True when a whole frame is buffered: reading it needs no system call."""
        buffer, offset = self._buffer, self._offset
        if len(buffer) - offset < _HEADER:
            return False
        size: int = unpack_from(">I", buffer, offset + 3)[0]
        return len(buffer) > offset + _HEADER + size

    def read_frame(self, unpack: Any = None) -> tuple[int, int, bytes]:
        """The next frame, as py-amqp's ``read_frame`` returns it.

        Nothing is taken from the buffer until the whole frame is there, so a
        read that times out half way loses nothing.
        """
        while True:
            buffer, offset = self._buffer, self._offset
            if len(buffer) - offset >= _HEADER:
                frame_type, channel, size = unpack_from(">BHI", buffer, offset)
                end = offset + _HEADER + size
                if len(buffer) > end:
                    if buffer[end] != _FRAME_END:
                        raise UnexpectedFrame(
                            f"Received frame_end {buffer[end]:#04x} while expecting 0xce"
                        )
                    self._offset = end + 1
                    return frame_type, channel, buffer[offset + _HEADER : end]
                wanted = end + 1 - (len(buffer) - offset)
            else:
                wanted = _HEADER
            self._fill(wanted)

    def _read(self, n: int, initial: bool = False, _errnos: Any = None) -> bytes:
        while len(self._buffer) - self._offset < n:
            self._fill(n)
        start = self._offset
        self._offset = start + n
        return self._buffer[start : start + n]

    def _fill(self, wanted: int) -> None:
        try:
            chunk = self.sock.recv(max(CHUNK, wanted))
        except TimeoutError:
            raise
        except OSError as exc:
            if exc.errno in _NOTHING_YET:  # a non-blocking read found nothing: as a timeout
                raise TimeoutError() from exc
            self.connected = False
            raise
        if not chunk:
            self.connected = False
            raise OSError("Server unexpectedly closed connection")
        self._buffer = self._buffer[self._offset :] + chunk
        self._offset = 0


class Channel(pyamqp.Channel):
    """kombu's AMQP channel, which never lets kombu inflate a compressed body.

    kombu decompresses whatever a sender's ``compression`` header names
    while it builds the message, unbounded (a 1 KB bz2 body can become
    gigabytes); the header is renamed first, and the worker decides
    (:mod:`pyfi.limits`).
    """

    def message_to_python(self, raw_message: Any) -> Any:
        hold_compression(raw_message.properties.get("application_headers"))
        return super().message_to_python(raw_message)


class Connection(pyamqp.Connection):
    """py-amqp's connection on a :class:`BufferedTCPTransport`."""

    Channel = Channel

    def Transport(
        self,
        host: str,
        connect_timeout: Any,
        ssl: Any = False,
        read_timeout: Any = None,
        write_timeout: Any = None,
        socket_settings: Any = None,
        **kwargs: Any,
    ) -> Any:
        """py-amqp's factory of the connection's transport (its name and signature)."""
        options = {
            "read_timeout": read_timeout,
            "write_timeout": write_timeout,
            "socket_settings": socket_settings,
            **kwargs,
        }
        if ssl:
            return super().Transport(host, connect_timeout, ssl, **options)
        return BufferedTCPTransport(host, connect_timeout=connect_timeout, **options)

    def blocking_read(self, timeout: float | None = None) -> Any:
        transport = self.transport
        if isinstance(transport, BufferedTCPTransport) and transport.frame_ready():
            return self.on_inbound_frame(transport.read_frame())
        return super().blocking_read(timeout)


class Transport(pyamqp.Transport):
    """kombu's ``pyamqp`` transport, on :class:`Connection`."""

    Connection = Connection
