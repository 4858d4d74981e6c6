"""A Redis server of the tests' own: started from the ``redis-server`` binary, on a free port.

Each pytest process (each xdist worker) runs its tests against a server of its
own rather than one database of a shared server, because a database number
isolates only keys: pub/sub channels, the Lua script cache, ``FLUSHALL`` and
the client list are server-wide, so tests on two databases of one server
still see (or flush) each other's state. A server costs a few milliseconds
and a few MB.

The port is found by binding port 0 and closing it; another process may take
it before the server binds it, so a server that is not the one answering on
its port (it exits: address in use) is started again on another port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server")
START_ATTEMPTS = 5
START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` child process, serving on 127.0.0.1 with nothing saved to disk."""

    def __init__(self, folder: Path) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed; install Redis to run these tests")
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(START_ATTEMPTS):
            port = free_port()
            process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(folder)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            if _serves(f"redis://127.0.0.1:{port}/0", process):
                self.process, self.port = process, port
                return
            process.kill()
            process.wait(timeout=10)
        raise RuntimeError(f"redis-server did not start on a free port in {START_ATTEMPTS} tries")

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)


def _serves(url: str, process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` (not some other server on the port) answers at ``url`` in time."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                return int(client.info("server")["process_id"]) == process.pid
            except redis.ConnectionError:
                time.sleep(0.01)
        return False
    finally:
        client.close()
