"""Shared fixtures: an isolated database per test, on SQLite and on real PostgreSQL.

PostgreSQL isolation: every test gets its own schema in the ``PYFI_TEST_DB``
database, selected through ``search_path`` in the URL, so the same URL works
for in-process calls, CliRunner and real subprocesses. The schema is dropped
afterwards. RabbitMQ isolation: a virtual host per test. Redis isolation: a
private ``redis-server`` per pytest process (so per xdist worker), flushed
before and after each test (see :mod:`tests.private_redis` for why not a
database of the shared server).

If a service is unreachable, its tests are skipped locally and the whole run
fails under CI (``CI`` set), so a missing service can never pass unnoticed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from click.testing import CliRunner, Result

from pyfi.cli import cli
from pyfi.db import schema
from pyfi.db.session import Database
from tests.private_redis import REDIS_SERVER, RedisServer
from tests.rabbitmq_vhosts import VirtualHosts

DEFAULT_TEST_DB = "postgresql+psycopg://postgres@127.0.0.1/test"
TEST_DB = os.environ.get("PYFI_TEST_DB", DEFAULT_TEST_DB)
TEST_AMQP = os.environ.get("PYFI_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _postgres_problem() -> str | None:
    """None if PYFI_TEST_DB accepts connections, else why not."""
    import psycopg

    dsn = TEST_DB.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).splitlines()[0]
    return None


def _redis_problem() -> str | None:
    return None if REDIS_SERVER else "redis-server is not installed"


def _amqp_problem() -> str | None:
    from kombu import Connection

    try:
        with Connection(TEST_AMQP, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises several unrelated types here
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


POSTGRES_PROBLEM = _postgres_problem()
REDIS_PROBLEM = _redis_problem()
AMQP_PROBLEM = _amqp_problem()

requires_postgres = pytest.mark.skipif(
    POSTGRES_PROBLEM is not None and not IN_CI,
    reason=f"PostgreSQL at PYFI_TEST_DB is unreachable: {POSTGRES_PROBLEM}",
)
requires_redis = pytest.mark.skipif(
    REDIS_PROBLEM is not None and not IN_CI,
    reason=f"no private Redis server: {REDIS_PROBLEM}",
)
requires_rabbitmq = pytest.mark.skipif(
    AMQP_PROBLEM is not None and not IN_CI,
    reason=f"RabbitMQ at PYFI_TEST_AMQP is unreachable: {AMQP_PROBLEM}",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = {
        f"PostgreSQL at {TEST_DB}": POSTGRES_PROBLEM,
        "Redis": REDIS_PROBLEM,
        f"RabbitMQ at {TEST_AMQP}": AMQP_PROBLEM,
    }
    missing = [f"{name}: {problem}" for name, problem in problems.items() if problem]
    if IN_CI and missing:
        raise pytest.UsageError("CI requires every service; unreachable: " + "; ".join(missing))


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real user's config or data directory."""
    for name in list(os.environ):
        if name.startswith("PYFI_") and name != "PYFI_TEST_DB":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    return home


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema of PYFI_TEST_DB."""
    schema_name = f"t_{uuid.uuid4().hex[:12]}"
    admin = Database(TEST_DB)
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema_name}"')
    separator = "&" if "?" in TEST_DB else "?"
    yield f"{TEST_DB}{separator}options={quote(f'-csearch_path={schema_name}')}"
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema_name}" CASCADE')
    admin.dispose()


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by every process of this test run (the xdist workers' parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(folder: Path, make: Callable[[Path], object]) -> Path:
    """``folder``, filled by ``make`` in the first process of the run that asks for it.

    The others wait for it and reuse it: what takes minutes (a virtualenv
    built from a repository) is then built once per run, not once per worker.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f".{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = folder.parent / f".{folder.name}.made"
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)  # the remains of a failed attempt
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This pytest process's own Redis server, started when a test first needs it."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A database of this process's Redis server, every database flushed before and after."""
    import redis

    url = redis_server.url()
    client = redis.Redis.from_url(url)
    client.flushall()
    yield url
    client.flushall()
    client.close()


@pytest.fixture(scope="session")
def virtual_hosts() -> Iterator[VirtualHosts]:
    """This pytest process's supply of fresh RabbitMQ virtual hosts."""
    hosts = VirtualHosts(urlsplit(TEST_AMQP).username or "guest")
    yield hosts
    hosts.close()


@pytest.fixture
def amqp_url(virtual_hosts: VirtualHosts) -> Iterator[str]:
    """A RabbitMQ URL on a virtual host of its own, deleted after the test."""
    vhost = virtual_hosts.take()
    yield TEST_AMQP.rstrip("/") + "/" + vhost
    virtual_hosts.discard(vhost)


@pytest.fixture(
    params=[
        pytest.param("filesystem"),
        pytest.param("rabbitmq", marks=[pytest.mark.rabbitmq, requires_rabbitmq]),
    ]
)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The embedded broker, then RabbitMQ on a virtual host of its own."""
    if request.param == "filesystem":
        return f"filesystem://{tmp_path / 'broker'}"
    return str(request.getfixturevalue("amqp_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a new SQLite file."""
    return f"sqlite:///{tmp_path / 'pyfi.sqlite'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres", marks=[pytest.mark.postgres, requires_postgres]),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind, in turn."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def empty_database(database_url: str) -> Iterator[Database]:
    """A :class:`Database` with no tables yet."""
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def database(empty_database: Database) -> Database:
    """A :class:`Database` migrated to the newest revision."""
    schema.upgrade(empty_database)
    return empty_database


class Flow:
    """Runs `flow` in-process against one database, as a user would type it."""

    def __init__(self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.database_url = database_url
        monkeypatch.setenv("PYFI_DB", database_url)
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> Result:
        result = self.runner.invoke(cli, list(args), input=input, catch_exceptions=True)
        if ok and result.exit_code != 0:
            raise AssertionError(
                f"flow {' '.join(args)} exited {result.exit_code}:\n{result.output}"
                f"{result.exception!r}"
            )
        return result

    def fails(self, *args: str, code: int = 2, input: str | None = None) -> str:
        """Run a command that must fail with ``code``; return its one error line."""
        result = self(*args, input=input, ok=False)
        assert result.exit_code == code, (result.exit_code, result.output)
        assert "Traceback" not in result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.output
        return errors[0]


# Marks of a test that needs PostgreSQL, RabbitMQ and Redis all at once.
NEEDS_ALL_SERVICES = [
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.redis,
    requires_postgres,
    requires_rabbitmq,
    requires_redis,
]


@pytest.fixture(params=[pytest.param("embedded"), pytest.param("real", marks=NEEDS_ALL_SERVICES)])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A whole pyfi network: embedded (SQLite, a folder broker) or real (three servers)."""
    from tests.acceptance.mesh import make_stack

    yield from make_stack(request, tmp_path, monkeypatch)


@pytest.fixture
def flow(database: Database, monkeypatch: pytest.MonkeyPatch) -> Flow:
    """`flow` bound to a migrated database of each kind."""
    return Flow(database.url, monkeypatch)


FIRST_FLOW: list[tuple[str, ...]] = [
    ("add", "queue", "-n", "pyfi.queue1", "-t", "direct"),
    (
        "add",
        "processor",
        "-n",
        "proc1",
        "-g",
        "https://github.com/radiantone/pyfi-processors",
        "-m",
        "pyfi.processors.sample",
        "-h",
        "localhost",
        "-c",
        "5",
    ),
    (
        "add",
        "socket",
        "-n",
        "pyfi.processors.sample.do_something",
        "-q",
        "pyfi.queue1",
        "-pn",
        "proc1",
        "-t",
        "do_something",
    ),
    (
        "add",
        "socket",
        "-n",
        "pyfi.processors.sample.do_this",
        "-q",
        "pyfi.queue1",
        "-pn",
        "proc1",
        "-t",
        "do_this",
    ),
    (
        "add",
        "plug",
        "-n",
        "plug1",
        "-q",
        "pyfi.queue1",
        "--source",
        "pyfi.processors.sample.do_something",
        "--target",
        "pyfi.processors.sample.do_this",
    ),
]


@pytest.fixture
def first_flow(flow: Flow) -> Flow:
    """The reference's "Creating Your First Flow" network, plus a plug between the sockets."""
    for command in FIRST_FLOW:
        flow(*command)
    return flow


def count_rows(database: Database, model: Any) -> int:
    """How many rows ``model``'s table holds."""
    from sqlalchemy import func, select

    with database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
