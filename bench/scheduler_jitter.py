"""How late a scheduled call is published: the scheduler's fire jitter.

Runs the scheduler an agent runs (election, claim, publish through the
client) for a while against a real database and broker, with sockets
firing every second, then reports the lateness of each fire: the time the
broker confirmed the call (``schedule_fires.fired``) minus its scheduled
instant, as p50, p99 and max. Prints the figures; asserts nothing.

    .venv/bin/python bench/scheduler_jitter.py       # embedded: SQLite, a folder broker
    .venv/bin/python bench/scheduler_jitter.py --db postgresql+psycopg://... --broker amqp://...
    options: --seconds 60 --sockets 1 --interval 1

A PostgreSQL database gets a schema of its own for the run, dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from pyfi import objects
from pyfi.client.calls import Client
from pyfi.config import Settings
from pyfi.db import models, schema
from pyfi.db.session import Database
from pyfi.masking import mask_url
from pyfi.scheduler.leader import leadership_for
from pyfi.scheduler.loop import Scheduler
from pyfi.scheduler.service import publisher


@contextmanager
def run_database(url: str | None, folder: Path) -> Iterator[str]:
    """The URL of an empty database for the run: a SQLite file, or a fresh PostgreSQL schema."""
    if url is None:
        yield f"sqlite:///{folder / 'pyfi.sqlite'}"
        return
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = Database(url)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={name}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def add_sockets(database: Database, count: int, interval: int) -> None:
    with database.transaction() as session:
        kind = objects.KINDS
        objects.create(session, kind["queue"], {"name": "jitter"})
        objects.create(
            session,
            kind["processor"],
            {"name": "jitter", "module": "jitter", "gitrepo": "https://example.org/jitter"},
        )
        for index in range(count):
            objects.create(
                session,
                kind["socket"],
                {
                    "name": f"jitter.{index}",
                    "queue": "jitter",
                    "processor": "jitter",
                    "task": "tick",
                    "interval": interval,
                },
            )


def remove_queues(client: Client, count: int) -> None:
    """Delete the run's queues and exchange (and the calls waiting in them)."""
    channel = client.broker.connection.default_channel
    for index in range(count):
        route = client.route(f"jitter.{index}")
        channel.queue_delete(queue=route.queue)
        channel.queue_delete(queue=route.dead_letter_queue)
    channel.exchange_delete(exchange=client.route("jitter.0").exchange)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: an embedded SQLite file)")
    parser.add_argument("--broker", help="broker URL (default: an embedded folder broker)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sockets", type=int, default=1)
    parser.add_argument("--interval", type=int, default=1)
    options = parser.parse_args()
    broker = options.broker or "filesystem://(temporary folder)"
    with tempfile.TemporaryDirectory() as tmp, run_database(options.db, Path(tmp)) as url:
        database = Database(url)
        schema.upgrade(database)
        add_sockets(database, options.sockets, options.interval)
        settings = Settings(
            database_url=url,
            broker_url=options.broker or f"filesystem://{Path(tmp) / 'broker'}",
            backend_url=f"sqlite:///{Path(tmp) / 'results.sqlite'}",
            data_dir=Path(tmp),
            ini_path=Path(tmp) / "pyfi.ini",
        )
        client = Client(settings, database)
        leadership = leadership_for(database, "bench")
        scheduler = Scheduler(database, publisher(client), leadership, "bench")
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop,))
        thread.start()
        time.sleep(options.seconds)
        stop.set()
        thread.join()
        leadership.release()
        with database.transaction() as session:
            fires = session.execute(
                select(models.ScheduleFire.instant, models.ScheduleFire.fired)
            ).all()
        if options.broker:  # leave nothing behind on a real broker
            remove_queues(client, options.sockets)
        client.close()
        database.dispose()
    late_ms = [(fired - instant).total_seconds() * 1000 for instant, fired in fires if fired]
    kind = "PostgreSQL" if options.db else "SQLite"
    print(
        f"{kind}, {mask_url(broker)}: {len(late_ms)} fires of "
        f"{options.sockets} socket(s) every {options.interval}s over {options.seconds:.0f}s"
    )
    if late_ms:
        print(
            "lateness (broker confirm - scheduled instant): "
            f"p50 {statistics.median(late_ms):.1f} ms, "
            f"p99 {percentile(late_ms, 0.99):.1f} ms, max {max(late_ms):.1f} ms"
        )


if __name__ == "__main__":
    main()
