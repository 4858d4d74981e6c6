"""The services one chaos case runs against, isolated, and removed afterwards.

``embedded``: SQLite files and the filesystem broker in the case's own
folder. ``real``: a PostgreSQL schema of its own (``PYFI_CHAOS_DB``, default
the local ``test`` database), a RabbitMQ virtual host of its own (created
and deleted with ``rabbitmqctl``), and a private ``redis-server`` on a free
port (nothing shared with anybody's Redis database) unless ``PYFI_CHAOS_REDIS``
names a Redis database to use instead (emptied before and after).

On the real stack the processes under test (the agent and its workers) reach
each service through a :class:`~tests.relay.TcpRelay`, so a case can
cut one off; the suite's own client (which sends the calls and reads the
results) and its checks connect directly, so they keep working through an
outage they stage. The machine's services are never stopped or restarted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.relay import TcpRelay

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672"
REDIS_START_TIMEOUT_S = 10.0


@dataclass
class Stack:
    """Service URLs for the processes under test and for the suite's own checks."""

    name: str
    folder: Path
    direct: dict[str, str]  # PYFI_DB, PYFI_BROKER, PYFI_BACKEND as the suite reaches them
    tested: dict[str, str]  # the same as the agent and its workers reach them
    relays: dict[str, TcpRelay] = field(default_factory=dict)  # "db", "broker", "backend"

    def env(self, urls: dict[str, str]) -> dict[str, str]:
        """An environment for a `flow` process using ``urls``; no user config is read."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYFI_")}
        home = self.folder / "home"
        return {
            **base,
            **urls,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "PYFI_INI": os.devnull,
            "PYFI_ALLOWED_REPOS": "file://*",
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _private_redis(folder: Path) -> Iterator[str]:
    """A redis-server of the case's own, on a free port, without persistence."""
    port = _free_port()
    log = (folder / "redis.log").open("wb")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}; see {log.name}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


@contextlib.contextmanager
def _shared_redis(url: str) -> Iterator[str]:
    """A Redis database given by the caller, emptied before and after the case."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def _schema(database: str, name: str) -> Iterator[str]:
    """A PostgreSQL schema of its own; the URL selects it through ``search_path``."""
    import psycopg

    dsn = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    separator = "&" if "?" in database else "?"
    try:
        yield f"{database}{separator}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def _vhost(amqp: str, name: str) -> Iterator[str]:
    """A RabbitMQ virtual host of its own (``rabbitmqctl``), deleted afterwards."""
    ctl = ["rabbitmqctl", "-q"]
    subprocess.run([*ctl, "add_vhost", name], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(
            [*ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield f"{amqp.rstrip('/')}/{name}"
    finally:
        subprocess.run([*ctl, "delete_vhost", name], check=False, capture_output=True, timeout=60)


def _through(url: str, relay: TcpRelay) -> str:
    """``url`` with its host and port replaced by the relay's."""
    from sqlalchemy.engine import make_url

    if url.startswith(("postgresql", "sqlite")):
        return (
            make_url(url)
            .set(host="127.0.0.1", port=relay.port)
            .render_as_string(hide_password=False)
        )
    scheme, rest = url.split("://", 1)
    credentials, _, location = rest.rpartition("@")
    _hostport, _, path = location.partition("/")
    prefix = f"{credentials}@" if credentials else ""
    return f"{scheme}://{prefix}127.0.0.1:{relay.port}/{path}"


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    return parts.hostname or "127.0.0.1", parts.port or default_port


@contextlib.contextmanager
def open_stack(name: str, folder: Path) -> Iterator[Stack]:
    """The services of one case on stack ``name`` (``embedded`` or ``real``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "embedded":
        urls = {
            "PYFI_DB": f"sqlite:///{folder / 'pyfi.sqlite'}",
            "PYFI_BROKER": f"filesystem://{folder / 'broker'}",
            "PYFI_BACKEND": f"sqlite:///{folder / 'results.sqlite'}",
        }
        yield Stack(name, folder, urls, dict(urls))
        return
    tag = f"chaos_{uuid.uuid4().hex[:10]}"
    database = os.environ.get("PYFI_CHAOS_DB", DEFAULT_DB)
    amqp = os.environ.get("PYFI_CHAOS_AMQP", DEFAULT_AMQP)
    with contextlib.ExitStack() as stack:
        direct = {
            "PYFI_DB": stack.enter_context(_schema(database, tag)),
            "PYFI_BROKER": stack.enter_context(_vhost(amqp, tag)),
            "PYFI_BACKEND": stack.enter_context(
                _shared_redis(shared)
                if (shared := os.environ.get("PYFI_CHAOS_REDIS"))
                else _private_redis(folder)
            ),
        }
        relays = {
            "db": stack.enter_context(TcpRelay(*_host_port(direct["PYFI_DB"], 5432))),
            "broker": stack.enter_context(TcpRelay(*_host_port(direct["PYFI_BROKER"], 5672))),
            "backend": stack.enter_context(TcpRelay(*_host_port(direct["PYFI_BACKEND"], 6379))),
        }
        tested = {
            "PYFI_DB": _through(direct["PYFI_DB"], relays["db"]),
            "PYFI_BROKER": _through(direct["PYFI_BROKER"], relays["broker"]),
            "PYFI_BACKEND": _through(direct["PYFI_BACKEND"], relays["backend"]),
        }
        yield Stack(name, folder, direct, tested, relays)
