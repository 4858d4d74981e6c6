"""pyfi on the shared services: two `flow worker start` processes, one processor.

The meta-model lives in a schema of its own in PostgreSQL; results in Redis;
calls travel on RabbitMQ. Call records and live events are on (pyfi's
defaults) unless the system is built with ``provenance=False`` (W8).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.systems import counter
from bench.systems.base import ROOT, Services, System

FLOW = str(Path(sys.executable).parent / "flow")
PROCESSOR = "bench"
THREADS = 8  # per worker process; as Dramatiq's default
CHAIN = ("bench.hop1", "bench.hop2", "bench.hop3")


class PyfiSystem(System):
    name = "pyfi"

    def __init__(self, services: Services, *, provenance: bool = True) -> None:
        super().__init__(services)
        self.provenance = provenance
        self.env = {
            **services.env,
            "PYFI_DB": services.database_url,
            "PYFI_BROKER": services.amqp_url,
            "PYFI_BACKEND": services.redis_url,
            "PYFI_INI": "/dev/null",
            counter.REDIS_ENV: services.redis_url,
        }
        self._client: Any = None

    # -- set-up -----------------------------------------------------------
    def flow(self, *args: str) -> str:
        return subprocess.run(
            [FLOW, *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def declare(self) -> None:
        """The benchmark's network: one processor, its sockets, a 3-socket plug chain."""
        self.flow("db", "init")
        self.flow("add", "queue", "-n", "benchq")
        self.flow("add", "processor", "-n", PROCESSOR, "-g", "file:///bench", "-m",
                  "bench.systems.pyfi_tasks", "-c", str(THREADS))  # fmt: skip
        for task in ("noop", "count", "step", "gather"):
            self.flow("add", "socket", "-n", f"bench.{task}", "-q", "benchq", "-pn", PROCESSOR,
                      "-t", task)  # fmt: skip
        for socket, task in zip(CHAIN, ("hop", "hop", "last_hop"), strict=True):
            self.flow("add", "socket", "-n", socket, "-q", "benchq", "-pn", PROCESSOR, "-t", task)
        for source, target in itertools.pairwise(CHAIN):
            self.flow("add", "plug", "-n", f"{source}-{target}", "-q", "benchq", "-s", source,
                      "-t", target)  # fmt: skip

    def start(self) -> None:
        self.declare()
        for index in range(2):
            self.processes.append(self.spawn_worker(index))
        self.wait_ready(self.processes)
        from pyfi.client.calls import Client
        from pyfi.config import load_settings

        self._client = Client(load_settings({}, self.env))

    def spawn_worker(self, index: int, *extra: str) -> subprocess.Popen[bytes]:
        log = self.services.workdir / f"pyfi-worker-{index}.log"
        flags = [*extra] if self.provenance else [*extra, "--no-record", "--no-events"]
        with log.open("wb") as output:
            return subprocess.Popen(
                [FLOW, "worker", "start", "-p", PROCESSOR, "--path", str(ROOT),
                 "-c", str(THREADS), *flags],
                stdout=output, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip

    def wait_ready(self, processes: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        logs = [self.services.workdir / f"pyfi-worker-{i}.log" for i in range(len(processes))]
        while time.monotonic() < deadline:
            if all("consuming" in log.read_text(errors="replace") for log in logs):
                return
            if any(p.poll() is not None for p in processes):
                break
            time.sleep(0.05)
        raise RuntimeError("pyfi workers did not start:\n" + logs[0].read_text(errors="replace"))

    def attach_listener(self) -> subprocess.Popen[bytes]:
        """`flow listen` on every channel, printing to nowhere; subscribed when this returns."""
        # Its output buffered, as a user's shell has it.
        env = {k: v for k, v in self.env.items() if k != "PYTHONUNBUFFERED"}
        listener = subprocess.Popen(
            [FLOW, "listen", "--name", "global", "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert listener.stderr is not None
        first = listener.stderr.readline().decode(errors="replace")
        if not first.startswith("Listening to"):
            listener.kill()
            raise RuntimeError(f"flow listen did not start: {first}")
        return listener

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        super().stop()

    # -- workloads ----------------------------------------------------------
    def roundtrip(self, n: int) -> None:
        client = self._client
        sent = client.send_many("bench.noop", (([i], {}) for i in range(n)))
        if client.results([message.call_id for message in sent], 120) != list(range(n)):
            raise RuntimeError("W1: wrong results")

    def fire_and_forget(self, n: int) -> None:
        key = counter.new_key()
        self._client.send_many("bench.count", (([key], {}) for _ in range(n)))
        counter.wait_count(self.services.redis_url, key, n, 300)

    def latencies(self, n: int) -> list[float]:
        client, out = self._client, []
        for i in range(n):
            start = time.perf_counter()
            client.call("bench.noop", [i], timeout_s=60)
            out.append(time.perf_counter() - start)
        return out

    def pipelines(self, n: int, length: int) -> None:
        from pyfi.client.compositions import pipeline
        from pyfi.client.functions import Socket

        step = Socket("bench.step", client=self._client)
        flow = pipeline([step.p(0), *[step.p() for _ in range(length - 1)]], client=self._client)
        handles = [flow() for _ in range(n)]
        for handle in handles:
            assert handle.get(timeout=300) == length

    def funnels(self, n: int, width: int) -> None:
        from pyfi.client.compositions import funnel
        from pyfi.client.functions import Socket

        noop = Socket("bench.noop", client=self._client)
        gather = Socket("bench.gather", client=self._client)
        flow = funnel([noop.p(i) for i in range(width)], gather.p(), client=self._client)
        handles = [flow() for _ in range(n)]
        for handle in handles:
            assert handle.get(timeout=300) == width

    def plug_chain(self, n: int) -> None:
        key = counter.new_key()
        self._client.send_many(CHAIN[0], (([{"key": key}], {}) for _ in range(n)))
        counter.wait_count(self.services.redis_url, key, n, 300)

    # -- W7 ---------------------------------------------------------------
    def first_call_s(self, *, from_spec: bool = False) -> float:
        """From starting a worker process to the first call executed (already queued).

        ``from_spec``: started as an agent starts it, handed the processor's
        spec in a file, instead of reading the model itself.
        """
        self.stop()
        client = _fresh_client(self.env)
        extra: list[str] = []
        if from_spec:
            from pyfi.wiring import load_processor, spec_to_json

            spec_file = self.services.workdir / "bench.spec.json"
            with client.database.connect() as connection:
                spec_file.write_text(spec_to_json(load_processor(connection, PROCESSOR)))
            extra = ["--spec", str(spec_file)]
        call = client.send("bench.noop", ["first"])
        start = time.perf_counter()
        process = self.spawn_worker(0, *extra)
        try:
            client.result(call.call_id, 60)
            return time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(30)
            client.close()


def _fresh_client(env: dict[str, str]) -> Any:
    from pyfi.client.calls import Client
    from pyfi.config import load_settings

    return Client(load_settings({}, env))


def clean_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
