"""The raw ceiling: what RabbitMQ itself does on this machine, through pika.

One publisher sends n persistent messages to a durable queue with publisher
confirms, keeping up to `WINDOW` messages unconfirmed, so that the broker
confirms them in batches (`multiple=True`) rather than one round trip each.
Two consumer processes, like two workers, ack each message. The time runs
from the first publish until every message is both confirmed and acked.

Also the small pika helpers the adapters share: wait until a queue has its
consumers, and delete queues and exchanges.

    python -m bench.systems.raw [--amqp URL] [-n 20000]
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import subprocess
import time
from collections.abc import Iterable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from bench.systems.base import Services

QUEUE = "bench.raw"
WINDOW = 1000  # unconfirmed messages in flight; RabbitMQ acks them in batches
PREFETCH = 100  # per consumer: enough to keep it busy, small enough to share
TIMEOUT = 300.0


def wait_consumers(
    amqp_url: str,
    queue: str,
    count: int,
    timeout: float,
    processes: Iterable[subprocess.Popen[bytes]] = (),
) -> None:
    """Return once `queue` exists and has at least `count` consumers.

    Parameters:
        amqp_url: the run's vhost.
        queue: the queue the workers consume from.
        count: how many consumers make the workers ready.
        timeout: seconds to wait at most.
        processes: worker processes; if one exits, stop waiting.

    Raises:
        RuntimeError: a worker process exited first.
        TimeoutError: the consumers did not appear in time.
    """
    import pika
    from pika.exceptions import ChannelClosedByBroker

    deadline = time.monotonic() + timeout
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
        while True:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"worker {process.args!r} exited ({process.returncode})")
            channel = connection.channel()
            try:
                ok = channel.queue_declare(queue, passive=True)
            except ChannelClosedByBroker:  # not declared yet
                pass
            else:
                channel.close()
                if ok.method.consumer_count >= count:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue}: fewer than {count} consumers after {timeout} s")
            time.sleep(0.1)


def delete_queues(amqp_url: str, queues: Iterable[str], exchanges: Iterable[str] = ()) -> None:
    """Delete queues and exchanges (missing ones are fine).

    Parameters:
        amqp_url: the run's vhost.
        queues: queue names.
        exchanges: exchange names.
    """
    import pika

    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
        for exchange in exchanges:
            channel.exchange_delete(exchange)


def _consume(
    amqp_url: str,
    n: int,
    prefetch: int,
    consumed: Any,
    done_at: Any,
    done: Event,
    stop: Event,
) -> None:
    """One consumer process: ack each message; the one that sees the n-th says so."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        with consumed.get_lock():
            consumed.value += 1
            last = consumed.value == n
        if last:
            # time.monotonic is CLOCK_MONOTONIC, comparable across processes.
            done_at.value = time.monotonic()
            done.set()

    channel.basic_consume(QUEUE, on_message)
    while not stop.is_set():
        connection.process_data_events(time_limit=0.1)
    connection.close()


class _Publisher:
    """Publish n persistent messages with a window of unconfirmed ones."""

    def __init__(self, amqp_url: str, n: int, window: int) -> None:
        import pika

        self.pika = pika
        self.parameters = pika.URLParameters(amqp_url)
        self.properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        self.n = n
        self.window = window
        self.published = 0
        self.unconfirmed: collections.deque[int] = collections.deque()
        self.started_at = 0.0
        self.confirmed_at = 0.0
        self.error: str | None = None
        self.connection: Any = None
        self.channel: Any = None

    def run(self) -> None:
        """Connect, publish everything, return once all is confirmed."""
        self.connection = self.pika.SelectConnection(
            self.parameters,
            on_open_callback=lambda connection: connection.channel(
                on_open_callback=self._on_channel
            ),
            on_open_error_callback=self._on_error,
            on_close_callback=lambda connection, reason: connection.ioloop.stop(),
        )
        self.connection.ioloop.start()
        if self.error is not None:
            raise RuntimeError(self.error)
        if len(self.unconfirmed) or self.published < self.n:
            raise RuntimeError(f"connection closed with {self.published} of {self.n} published")

    def _on_error(self, connection: Any, error: Any) -> None:
        self.error = f"cannot connect: {error}"
        connection.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, frame: Any) -> None:
        self.started_at = time.monotonic()
        self._publish_more()

    def _publish_more(self) -> None:
        while self.published < self.n and len(self.unconfirmed) < self.window:
            self.channel.basic_publish("", QUEUE, b"%d" % self.published, self.properties)
            self.published += 1
            self.unconfirmed.append(self.published)  # delivery tags count from 1

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, self.pika.spec.Basic.Nack):
            self.error = f"the broker nacked delivery tag {method.delivery_tag}"
            self.connection.close()
            return
        tag = method.delivery_tag
        if method.multiple:
            while self.unconfirmed and self.unconfirmed[0] <= tag:
                self.unconfirmed.popleft()
        else:
            self.unconfirmed.remove(tag)
        if self.published < self.n:
            self._publish_more()
        elif not self.unconfirmed:
            self.confirmed_at = time.monotonic()
            self.connection.close()


def raw_ceiling(
    services: Services, n: int = 20000, *, prefetch: int = PREFETCH, window: int = WINDOW
) -> float:
    """Publish, consume and ack n persistent messages; return the seconds it took.

    Parameters:
        services: the run's servers (only the vhost is used).
        n: how many messages.
        prefetch: unacked messages per consumer.
        window: unconfirmed messages per publisher.

    Returns:
        Seconds from the first publish until all n are confirmed and acked.

    Raises:
        RuntimeError: the publisher failed or a consumer died.
        TimeoutError: not all messages were consumed in time.
    """
    import pika

    with pika.BlockingConnection(pika.URLParameters(services.amqp_url)) as connection:
        channel = connection.channel()
        channel.queue_declare(QUEUE, durable=True)
        channel.queue_purge(QUEUE)
    context = multiprocessing.get_context("spawn")
    consumed = context.Value("q", 0)
    done_at = context.Value("d", 0.0)
    done, stop = context.Event(), context.Event()
    consumers = [
        context.Process(
            target=_consume, args=(services.amqp_url, n, prefetch, consumed, done_at, done, stop)
        )
        for _ in range(2)
    ]
    for consumer in consumers:
        consumer.start()
    try:
        wait_consumers(services.amqp_url, QUEUE, 2, timeout=60)
        publisher = _Publisher(services.amqp_url, n, window)
        publisher.run()
        deadline = time.monotonic() + TIMEOUT
        while not done.wait(0.5):
            if not all(consumer.is_alive() for consumer in consumers):
                raise RuntimeError(f"a consumer died after {consumed.value} of {n} messages")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{consumed.value} of {n} messages consumed after {TIMEOUT} s")
        return float(max(publisher.confirmed_at, done_at.value) - publisher.started_at)
    finally:
        stop.set()
        for consumer in consumers:
            consumer.join(10)
            if consumer.is_alive():
                consumer.kill()
                consumer.join()
        delete_queues(services.amqp_url, [QUEUE])


def main() -> None:
    parser = argparse.ArgumentParser(description="The raw RabbitMQ ceiling, through pika.")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=PREFETCH)
    parser.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args()
    services = Services(amqp_url=args.amqp, redis_url="", database_url="", workdir=Path("."))
    for _ in range(args.repeat):
        seconds = raw_ceiling(services, args.n, prefetch=args.prefetch, window=args.window)
        print(f"{args.n} messages in {seconds:.3f} s: {args.n / seconds:,.0f} msg/s")


if __name__ == "__main__":
    main()
