"""The buffered AMQP transport cuts frames out of a real socket's byte stream.

A socket pair stands in for the broker's connection: bytes written on one end
arrive on the other exactly as TCP delivers them, in pieces of any size.
(Against RabbitMQ itself the transport carries every integration test.)
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from amqp.exceptions import UnexpectedFrame

from pyfi.broker.amqp_transport import BufferedTCPTransport


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


@pytest.fixture
def ends() -> Iterator[tuple[BufferedTCPTransport, socket.socket]]:
    """A transport reading one end of a socket pair, and the other end to write to."""
    ours, theirs = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:1", connect_timeout=1)
    transport.sock = ours
    transport._setup_transport()
    transport.connected = True
    yield transport, theirs
    ours.close()
    theirs.close()


def test_frames_sent_together_are_read_from_one_buffer(
    ends: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = ends
    # Given three frames arriving in one piece
    frames = [frame(1, 1, b"method"), frame(2, 1, b"header"), frame(3, 1, b"x" * 1000)]
    broker.sendall(b"".join(frames))
    # When they are read
    first = transport.read_frame()
    # Then the rest are already buffered and come out in order, whole
    assert transport.frame_ready()
    assert [first, transport.read_frame(), transport.read_frame()] == [
        (1, 1, b"method"),
        (2, 1, b"header"),
        (3, 1, b"x" * 1000),
    ]
    assert not transport.frame_ready()


def test_a_frame_in_pieces_and_a_timeout_half_way_lose_nothing(
    ends: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = ends
    whole = frame(3, 2, bytes(range(256)) * 600)  # larger than one read
    transport.sock.settimeout(0.05)
    # Given half a frame so far
    broker.sendall(whole[:5])
    with pytest.raises(TimeoutError):
        transport.read_frame()
    broker.sendall(whole[5 : len(whole) // 2])
    with pytest.raises(TimeoutError):
        transport.read_frame()
    assert not transport.frame_ready()
    # When the rest arrives
    broker.sendall(whole[len(whole) // 2 :])
    # Then the frame reads whole
    assert transport.read_frame() == (3, 2, bytes(range(256)) * 600)


def test_a_bad_frame_end_is_refused(ends: tuple[BufferedTCPTransport, socket.socket]) -> None:
    transport, broker = ends
    broker.sendall(frame(1, 0, b"ok")[:-1] + b"\x00")
    with pytest.raises(UnexpectedFrame, match="frame_end 0x00"):
        transport.read_frame()


def test_a_closed_connection_is_an_error_not_a_hang(
    ends: tuple[BufferedTCPTransport, socket.socket],
) -> None:
    transport, broker = ends
    broker.sendall(frame(1, 0, b"ok")[:4])
    broker.close()
    with pytest.raises(OSError, match="unexpectedly closed"):
        transport.read_frame()
    assert not transport.connected
