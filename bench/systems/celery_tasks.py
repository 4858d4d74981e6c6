"""The Celery app the benchmark measures, as a Celery user would write it.

The broker (`PYFI_BENCH_TASKS_AMQP`) and the result backend
(`PYFI_BENCH_TASKS_REDIS`) are read at import: the worker is started with
`celery -A bench.systems.celery_tasks` and the adapter sets both for it, and
for its own process before importing.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.systems import counter

try:
    AMQP_URL = os.environ[counter.AMQP_ENV]
    REDIS_URL = os.environ[counter.REDIS_ENV]
except KeyError as exc:
    raise RuntimeError(f"{exc.args[0]} is not set: start Celery through CelerySystem") from exc

app = Celery("bench", broker=AMQP_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # pyfi acks a message only once its function has run; Celery acks on
    # receipt by default, which would measure it doing less. Everything else
    # (prefetch multiplier 4, prefork pool) stays at Celery's defaults.
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
)


@app.task
def noop(x: int) -> int:
    """W1, W3 and the chord header: return a small value."""
    return x


@app.task(ignore_result=True)
def count(x: int, key: str) -> None:
    """W2: fire and forget; only the counter says it was processed."""
    counter.incr(REDIS_URL, key)


@app.task
def step(x: int) -> int:
    """W4: one link of a chain."""
    return x + 1


@app.task
def gather(values: list[int]) -> int:
    """W5: the chord callback, given every header result."""
    return sum(values)


@app.task(ignore_result=True)
def hop1(x: int) -> int:
    """W6: the first step; its return value goes to the linked `hop2`."""
    return x + 1


@app.task(ignore_result=True)
def hop2(x: int) -> int:
    """W6: the second step; its return value goes to the linked `hop3`."""
    return x + 1


@app.task(ignore_result=True)
def hop3(x: int, key: str) -> None:
    """W6: the last step, which counts."""
    counter.incr(REDIS_URL, key)
