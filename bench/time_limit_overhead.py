"""What a time limit costs a call: in the pool's thread versus in a child process.

A processor with a ``timelimit`` runs its calls in child processes
(pyfi.worker.timelimit). This times the call alone, without broker or result
store, for a trivial function (``add_two`` of processors_example), with one
and with several threads at once. Prints the figures; asserts nothing (a
benchmark is not a test).

    .venv/bin/python bench/time_limit_overhead.py [--calls 20000] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pyfi.broker.topology import SocketRoute
from pyfi.wiring import ProcessorSpec, SocketSpec
from pyfi.worker import registry
from pyfi.worker.executor import execute
from pyfi.worker.timelimit import TimeLimitedCalls

EXAMPLES = Path(__file__).resolve().parents[1] / "processors_example"
SPEC = ProcessorSpec(
    name="bench",
    module="pyfi_examples.sample",
    retries=0,
    retry_delay_s=0,
    sockets=(
        SocketSpec(
            name="add",
            id="00000000-0000-0000-0000-000000000001",
            task="add_two",
            queue="q",
            route=SocketRoute(socket="add", exchange="q"),
            wait=False,
            join_arguments=(),
            outgoing=(),
        ),
    ),
    timelimit_s=60,
)


def rate(run_one: Callable[[int], object], calls: int, threads: int) -> float:
    """Calls per second of ``run_one`` spread over ``threads`` threads."""

    def work() -> None:
        for index in range(calls // threads):
            run_one(index)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return calls / (time.perf_counter() - started)


def in_a_child(children: TimeLimitedCalls, index: int) -> object:
    return children.execute("add", [index, 1], {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    options = parser.parse_args()
    function = registry.resolve(SPEC, EXAMPLES)["add"]
    for threads in options.threads:
        children = TimeLimitedCalls(SPEC, EXAMPLES, size=threads, limit_s=60)
        children.execute("add", [0, 0], {})  # wait for the children to start
        in_thread = rate(lambda i: execute(function, [i, 1], {}), options.calls, threads)
        in_child = rate(functools.partial(in_a_child, children), options.calls, threads)
        children.close()
        print(
            f"threads={threads}: in-thread {in_thread:,.0f} calls/s, "
            f"child process {in_child:,.0f} calls/s "
            f"({1e6 / in_child - 1e6 / in_thread:,.0f} µs more per call)"
        )


if __name__ == "__main__":
    main()
