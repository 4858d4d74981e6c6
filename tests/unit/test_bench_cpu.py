"""The benchmark's CPU accounting charges each process to the right role, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench import cpu

CALLER = os.getpid()


def _sample(kworker: str = "kworker/u8:0-writeback", **cpu_seconds: float) -> cpu.Sample:
    """A host of: init, a worker with a pool child, the caller, servers, a kernel worker."""
    return {
        1: (0, "systemd", 1, 0.0),
        100: (1, "flow", 500, cpu_seconds.get("worker", 0.0)),
        101: (100, "python", 510, cpu_seconds.get("child", 0.0)),
        CALLER: (1, "python", 400, cpu_seconds.get("caller", 0.0)),
        200: (1, "beam.smp", 10, cpu_seconds.get("broker", 0.0)),
        201: (1, "redis-server", 10, cpu_seconds.get("redis", 0.0)),
        202: (1, "postgres", 10, cpu_seconds.get("postgres", 0.0)),
        12: (2, kworker, 5, 7.0),
    }


def test_roles_follow_workers_children_and_server_names() -> None:
    roles = cpu.roles(_sample(), workers={100}, caller=CALLER)

    assert roles[100] == roles[101] == "workers"
    assert roles[CALLER] == "caller"
    assert (roles[200], roles[201], roles[202]) == ("broker", "redis", "postgres")
    assert roles[1] == roles[12] == "other"


def test_per_call_is_each_roles_cpu_since_the_first_sample_over_the_calls() -> None:
    before = _sample(worker=1.0, child=1.0, caller=2.0, broker=10.0, redis=1.0, postgres=3.0)
    after = _sample(worker=1.5, child=1.25, caller=2.1, broker=10.4, redis=1.05, postgres=3.0)

    spent = cpu.per_call(before, after, calls=1000, workers={100})

    assert spent["workers"] == pytest.approx(750.0)
    assert spent["caller"] == pytest.approx(100.0)
    assert spent["broker"] == pytest.approx(400.0)
    assert spent["redis"] == pytest.approx(50.0)
    assert spent["postgres"] == pytest.approx(0.0)
    assert spent["total"] == pytest.approx(sum(v for k, v in spent.items() if k != "total"))


def test_a_renamed_kernel_worker_is_not_charged_its_whole_life() -> None:
    # Kernel workers change their command as they change jobs; only a new
    # start time means a new process.
    before = _sample(kworker="kworker/u8:0-writeback")
    after = _sample(kworker="kworker/u8:0-ext4-rsv-conversion")

    assert cpu.per_call(before, after, calls=10, workers={100})["other"] == 0.0


def test_a_process_started_between_samples_is_charged_from_nothing() -> None:
    before = _sample(worker=5.0)
    after = _sample()
    after[100] = (1, "flow", 900, 0.2)  # the pid reused by a process started since

    assert cpu.per_call(before, after, calls=100, workers={100})["workers"] == pytest.approx(2000.0)


def test_the_meter_records_per_workload_role_and_system() -> None:
    meter = cpu.CpuMeter()
    meter.add("W1", "pyfi", {"total": 3.0, "workers": 2.0})
    meter.add("W1", "dramatiq", {"total": 5.0, "workers": 4.0})
    meter.add("W2", "pyfi", {"workers": 1.0, "total": 2.0})

    figures = meter.figures()

    assert [f.workload for f in figures] == [
        "W1 CPU total", "W1 CPU workers", "W2 CPU total", "W2 CPU workers",
    ]  # fmt: skip
    assert figures[0].values == {"pyfi": [3.0], "dramatiq": [5.0]}
    assert figures[1].ratio("pyfi", "dramatiq") == pytest.approx(0.5)


# A worker process that starts a child burning 0.4 s of CPU; then both wait.
_BURNER = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end:\n    pass\ntime.sleep(60)\n"  # noqa: E501
_WORKER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.mark.skipif(not cpu.available(), reason="needs /proc")
def test_a_busy_child_of_a_worker_is_charged_to_the_workers_on_a_real_host() -> None:
    before = cpu.sample()
    with subprocess.Popen(
        [sys.executable, "-c", _WORKER, _BURNER], stdout=subprocess.PIPE, text=True
    ) as worker:
        child = None
        try:
            assert worker.stdout is not None
            child = int(worker.stdout.readline())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if cpu.sample().get(child, (0, "", 0, 0.0))[3] >= 0.4:
                    break
                time.sleep(0.05)

            spent = cpu.per_call(before, cpu.sample(), calls=1, workers={worker.pid})
        finally:
            for pid in (child, worker.pid):
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)

    assert spent["workers"] >= 0.4e6  # the child's burn, and both interpreters' start
    assert spent["caller"] < spent["workers"] / 2
