"""pyfi against Dramatiq, Celery and the raw broker, on the same servers, in one run.

    make bench                          # installs the pinned systems, runs everything
    python -m bench.run --scale 0.1     # a tenth of each workload's size
    python -m bench.run --systems pyfi,raw --reps 5

Prints a table (median, min-max over the repetitions, and pyfi's ratios) and
writes the figures as JSON (``--json``, default ``bench-results.json``).
Asserts nothing: a benchmark is not a test.

Servers (environment): BENCH_AMQP_HOST (127.0.0.1:5672, guest/guest; a vhost
BENCH_VHOST, default ``pyfi-bench``, is created), BENCH_REDIS
(redis://127.0.0.1:6379/13, flushed), BENCH_DB
(postgresql+psycopg://postgres@127.0.0.1/test; a schema BENCH_SCHEMA, default
``bench_run``, is created and dropped).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter
from bench.harness import Figure, machine, percentile, table, timed, write_json
from bench.systems.base import Services, System

VHOST = os.environ.get("BENCH_VHOST", "pyfi-bench")
SCHEMA = os.environ.get("BENCH_SCHEMA", "bench_run")
DATABASE = os.environ.get("BENCH_DB", "postgresql+psycopg://postgres@127.0.0.1/test")
# Every workload, W1 to W8; --workloads picks some (the raw ceiling goes with --systems).
WORKLOADS = frozenset(f"W{number}" for number in range(1, 9))
# W8's second system, beside the first: its vhost and schema take this suffix.
W8_OFF_SUFFIX = "_w8_off"

# Full sizes, from the issue; --scale shrinks them (never below 2).
SIZES = {
    "W1": 10_000,
    "W2": 10_000,
    "W3": 500,
    "W4": 200,
    "W4_length": 10,
    "W5": 20,
    "W5_width": 100,
    "W6": 5_000,
    "raw": 20_000,
}


def services(workdir: Path, suffix: str = "", *, flush: bool = True) -> Services:
    """Fresh, isolated places on the shared servers for this run.

    ``suffix`` names a second set (its own vhost and schema) for a system that
    runs beside another; ``flush`` False leaves the Redis database alone,
    which the other system is using.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("BENCH_AMQP_HOST", "127.0.0.1:5672")
    vhost = VHOST + suffix
    for command in (
        ["rabbitmqctl", "-q", "delete_vhost", vhost],
        ["rabbitmqctl", "-q", "add_vhost", vhost],
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
    ):
        subprocess.run(command, capture_output=True, check=command[2] != "delete_vhost")
    redis_url = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")
    if flush:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    _reset_schema(DATABASE, SCHEMA + suffix)
    return Services(
        amqp_url=f"amqp://guest:guest@{host}/{vhost}",
        redis_url=redis_url,
        database_url=f"{DATABASE}?options=-csearch_path%3D{SCHEMA + suffix}",
        workdir=workdir,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def _reset_schema(database: str, schema: str, drop_only: bool = False) -> None:
    import psycopg

    dsn = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if not drop_only:
            conn.execute(f'CREATE SCHEMA "{schema}"')


def build(name: str, shared: Services, **options: Any) -> System:
    if name == "pyfi":
        from bench.systems.pyfi_system import PyfiSystem

        return PyfiSystem(shared, **options)
    if name == "celery":
        from bench.systems.celery_system import CelerySystem

        return CelerySystem(shared)
    if name == "dramatiq":
        from bench.systems.dramatiq_system import DramatiqSystem

        return DramatiqSystem(shared)
    raise SystemExit(f"unknown system {name!r}; choose among pyfi, celery, dramatiq, raw")


class Run:
    """The figures of one run, filled system by system."""

    def __init__(
        self, sizes: dict[str, int], reps: int, workloads: frozenset[str] = WORKLOADS
    ) -> None:
        self.sizes, self.reps, self.workloads = sizes, reps, workloads
        n = sizes
        self.w1 = Figure(f"W1 {n['W1']} calls + results", "calls/s", True)
        self.w2 = Figure(f"W2 {n['W2']} fire-and-forget", "calls/s", True)
        self.w3 = {p: Figure(f"W3 {n['W3']} call+get p{p}", "ms", False) for p in (50, 95, 99)}
        self.w4 = Figure(f"W4 {n['W4']} pipelines x{n['W4_length']}", "s", False)
        self.w5 = Figure(f"W5 {n['W5']} funnels x{n['W5_width']}", "s", False)
        self.w6 = Figure(f"W6 {n['W6']} through 3-socket chain", "msgs/s", True)
        self.w7_first = Figure("W7 worker start to first call", "s", False)
        self.w7_spec = Figure("W7 same, spec handed over (agent)", "s", False)
        self.w7_redeploy = Figure("W7 agent redeploy, cached venv", "s", False)
        self.w8 = Figure("W8 W1 provenance off/on", "ratio", False)
        self.w8_listened = Figure("W8 same, `flow listen` attached", "ratio", False)
        self.raw = Figure(f"raw {n['raw']} publish+consume+ack", "msgs/s", True)
        self.cpu = CpuMeter()

    def figures(self) -> list[Figure]:
        return [
            self.w1, self.w2, *self.w3.values(), self.w4, self.w5, self.w6,
            self.w7_first, self.w7_spec, self.w7_redeploy, self.w8, self.w8_listened, self.raw,
        ]  # fmt: skip

    def measure(self, system: System, log: Callable[[str], None]) -> None:
        """Every workload on one started system, ``reps`` times each."""
        n, name = self.sizes, system.name
        workers = {process.pid for process in system.processes}
        wanted = self.workloads
        for _ in range(self.reps):
            if "W1" in wanted:
                log(f"{name}: W1")
                with self.cpu.measure("W1", name, n["W1"], workers):
                    self.w1.add(name, n["W1"] / timed(lambda: system.roundtrip(n["W1"])))
            if "W2" in wanted:
                log(f"{name}: W2")
                with self.cpu.measure("W2", name, n["W2"], workers):
                    self.w2.add(name, n["W2"] / timed(lambda: system.fire_and_forget(n["W2"])))
            if "W3" in wanted:
                log(f"{name}: W3")
                with self.cpu.measure("W3", name, n["W3"], workers):
                    latencies = system.latencies(n["W3"])
                for p, figure in self.w3.items():
                    figure.add(name, 1000 * percentile(latencies, p / 100))
            if "W4" in wanted:
                log(f"{name}: W4")
                self.w4.add(name, timed(lambda: system.pipelines(n["W4"], n["W4_length"])))
            if "W5" in wanted:
                log(f"{name}: W5")
                self.w5.add(name, timed(lambda: system.funnels(n["W5"], n["W5_width"])))
            if "W6" in wanted:
                log(f"{name}: W6")
                self.w6.add(name, n["W6"] / timed(lambda: system.plug_chain(n["W6"])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="pyfi,dramatiq,celery,raw")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", default="bench-results.json")
    parser.add_argument(
        "--workloads", default=",".join(sorted(WORKLOADS)), help="e.g. W1,W2 (default: all)"
    )
    parser.add_argument("--skip-agent", action="store_true", help="skip the W7 agent redeploy")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    # Counts scale; the shapes (pipeline length, funnel width) do not.
    sizes = {
        k: v if k.endswith(("_length", "_width")) else max(2, round(v * args.scale))
        for k, v in SIZES.items()
    }
    workloads = frozenset(w.strip().upper() for w in args.workloads.split(",") if w.strip())
    unknown = workloads - WORKLOADS
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(sorted(unknown))}; choose among W1-W8")
    run = Run(sizes, args.reps, workloads)

    def log(text: str) -> None:
        print(f"  .. {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="pyfi-bench-") as folder:
        for name in chosen:
            shared = services(Path(folder) / name)
            if name == "raw":
                from bench.systems.raw import raw_ceiling

                for _ in range(args.reps):
                    log("raw ceiling")
                    run.raw.add("raw", sizes["raw"] / raw_ceiling(shared, sizes["raw"]))
                continue
            system = build(name, shared)
            system.start()
            try:
                run.measure(system, log)
            finally:
                system.stop()
            if name == "pyfi" and workloads & {"W7", "W8"}:
                measure_pyfi_extras(run, folder, args, log)
    _reset_schema(DATABASE, SCHEMA, drop_only=True)
    for vhost in (VHOST, VHOST + W8_OFF_SUFFIX):
        command = ["rabbitmqctl", "-q", "delete_vhost", vhost]
        subprocess.run(command, check=False, capture_output=True)
    print(table(run.figures()))
    cpu = run.cpu.figures()
    if cpu:
        print(
            "\nCPU per call (µs) of every process on the host, by role; W8 is on minus off"
            " (W8+listen: `flow listen` counts as other)"
        )
        print(table(cpu))
    meta = {"machine": machine(), "sizes": sizes, "reps": args.reps}
    write_json(args.json, run.figures(), meta, cpu=cpu)
    print(f"\nfigures written to {args.json}")
    return 0


def measure_pyfi_extras(
    run: Run, folder: str, args: argparse.Namespace, log: Callable[[str], None]
) -> None:
    """W7 (start-up, redeploy) and W8 (provenance on vs off), which only pyfi has."""
    from bench.systems.pyfi_system import PyfiSystem

    measure_w8(run, Path(folder), log)
    # W7's first call: a worker process started alone, the call already queued.
    system = PyfiSystem(services(Path(folder) / "w7"))
    system.declare()
    try:
        for _ in range(run.reps):
            log("pyfi: W7 first call")
            run.w7_first.add("pyfi", system.first_call_s())
            run.w7_spec.add("pyfi", system.first_call_s(from_spec=True))
    finally:
        system.stop()
    if not args.skip_agent:
        from bench.systems.pyfi_agent import redeploy_seconds

        log("pyfi: W7 agent redeploy")
        fresh = services(Path(folder) / "agent")
        for seconds in redeploy_seconds(fresh, run.reps):
            run.w7_redeploy.add("pyfi", seconds)


def measure_w8(run: Run, folder: Path, log: Callable[[str], None]) -> None:
    """W1 with provenance on, on with `flow listen` attached, and off, in turn.

    Two systems run side by side for the whole measurement (their own vhosts
    and schemas), so that the three settings of a repetition are measured
    seconds apart rather than a start-up apart: on this host the speed of
    everything drifts by a quarter within minutes, and a ratio of two
    figures taken far apart measured the drift. "on" has nobody subscribed
    to live events (its workers then send none, see pyfi.events.audience);
    "listened" is the same system with `flow listen --name global --json`
    attached; "off" records and publishes nothing. Each repetition starts
    with another setting, and every measurement follows a warm-up of its own.
    """
    from bench.systems.pyfi_system import PyfiSystem
    from pyfi.events.audience import RECHECK_S

    n = run.sizes["W1"]
    on = PyfiSystem(services(folder / "w8-on"), provenance=True)
    off = PyfiSystem(services(folder / "w8-off", W8_OFF_SUFFIX, flush=False), provenance=False)
    try:
        for system in (on, off):
            system.start()
            # Both warm up alike (connections, the first batch of records), so
            # the ratio is of recording, not of start-up.
            system.roundtrip(max(2, n // 10))
        settings = [("on", on), ("listened", on), ("off", off)]
        for rep in range(run.reps):
            log("pyfi: W8")
            rates, spent = {}, {}
            # Each setting goes first in turn, and each is measured right
            # after a warm-up of its own: no setting always follows a pause.
            for setting, system in settings[rep % 3 :] + settings[: rep % 3]:
                listener = system.attach_listener() if setting == "listened" else None
                workers = {process.pid for process in system.processes}
                try:
                    system.roundtrip(max(2, n // 10))
                    with run.cpu.measure(None, "pyfi", n, workers) as used:
                        rates[setting] = n / timed(lambda s=system: s.roundtrip(n))  # type: ignore[misc]
                finally:
                    if listener is not None:
                        listener.terminate()
                        listener.wait(10)
                        # "on" must find its workers sure the listener has gone.
                        time.sleep(2 * RECHECK_S)
                spent[setting] = used
            # Above 1: recording costs that fraction of throughput.
            run.w8.add("pyfi", rates["off"] / rates["on"])
            run.w8_listened.add("pyfi", rates["off"] / rates["listened"])
            for setting, workload in (("on", "W8"), ("listened", "W8+listen")):
                if spent[setting]:  # what recording and live events cost, per role
                    base = spent["off"]
                    run.cpu.add(
                        workload, "pyfi", {r: v - base[r] for r, v in spent[setting].items()}
                    )
    finally:
        on.stop()
        off.stop()
        _reset_schema(DATABASE, SCHEMA + W8_OFF_SUFFIX, drop_only=True)


if __name__ == "__main__":
    raise SystemExit(main())
