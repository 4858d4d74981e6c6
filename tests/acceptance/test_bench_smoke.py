"""The benchmark harness runs every workload of pyfi, at a tiny size.

This keeps bench/ from rotting; it asserts that each figure was produced, not
how fast anything was (a benchmark is not a test). Celery, Dramatiq and pika
are not dev dependencies (they would pin pyfi's kombu and redis-py to older
releases in the test environment): their adapters run under `make bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpu import ROLES
from tests.acceptance.mesh import ROOT
from tests.conftest import NEEDS_ALL_SERVICES

# The harness starts a dozen worker processes one after another: about 1.5 min
# of CPU, several minutes on a loaded host. Its own timeout is the bound (the
# test's is a minute longer, so that the harness's reports first).
HARNESS_TIMEOUT_S = 600

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(HARNESS_TIMEOUT_S + 60),
    *NEEDS_ALL_SERVICES,
]


def test_bench_runs_every_pyfi_workload(tmp_path: Path, redis_url: str) -> None:
    # Given the harness pointed at places of its own (the Redis server is this
    # process's: the harness flushes its database and counts pub/sub listeners)
    results = tmp_path / "results.json"
    env = {
        **os.environ,
        "BENCH_VHOST": f"pyfi-bench-smoke-{os.getpid()}",
        "BENCH_SCHEMA": f"bench_smoke_{os.getpid()}",
        "BENCH_REDIS": redis_url,
        "PYTHONPATH": str(ROOT),
    }
    # When pyfi runs every workload once, at a tiny size
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--systems", "pyfi", "--reps", "1",
         "--scale", "0.002", "--skip-agent", "--json", str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=HARNESS_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # Then the table is printed and every pyfi workload has a figure
    assert "pyfi/dramatiq" in done.stdout
    figures = _figures(results)
    assert len(figures) == 14
    names = [f["workload"] for f in figures]
    assert "W7 same, spec handed over (agent)" in names
    assert "W8 same, `flow listen` attached" in names
    for figure in figures:
        expected = (
            set() if "redeploy" in figure["workload"] or "raw" in figure["workload"] else {"pyfi"}
        )
        assert set(figure["values"]) == expected, figure["workload"]
        assert all(v > 0 for values in figure["values"].values() for v in values)
    # And where per-process CPU can be read, W1-W3 and W8 have it for every
    # role (how it is charged is tested in tests/unit/test_bench_cpu.py)
    if Path("/proc/self/stat").exists():
        assert "CPU per call" in done.stdout
        cpu = {f["workload"]: f["values"]["pyfi"] for f in json.loads(results.read_text())["cpu"]}
        for workload in ("W1", "W2", "W3", "W8", "W8+listen"):
            for role in ROLES:
                assert len(cpu[f"{workload} CPU {role}"]) == 1, (workload, role)
        assert all(cpu[f"{w} CPU {role}"][0] >= 0 for w in ("W1", "W2", "W3") for role in ROLES)

    # And the run leaves no vhost of its own behind on the shared broker
    vhosts = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [vhost for vhost in vhosts if vhost.startswith(env["BENCH_VHOST"])]


def _figures(path: Path) -> list[dict]:
    return json.loads(path.read_text())["figures"]
