"""The chaos suite's cases that hold today, at a small size (docs/reliability.md).

Each runs a case of ``bench.chaos`` as the suite does: the probe processor
deployed by a real agent on services of its own (a PostgreSQL schema, a
RabbitMQ virtual host and a private redis-server, or the embedded stack),
harm done, and the outcomes, the probe's ledger of executions and the
processes counted. The cases that still miss their targets are listed in
docs/reliability.md; their checks join this file once they hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos.cases import (
    Run,
    Size,
    broker_outage,
    database_outage,
    hostile_flood,
    kill_workers,
    redis_outage,
)
from bench.chaos.network import make_repo
from bench.chaos.report import CaseResult
from tests.conftest import NEEDS_ALL_SERVICES, TEST_AMQP, TEST_DB, made_once

pytestmark = pytest.mark.slow

# The embedded default, then the real services.
STACKS = ["embedded", pytest.param("real", marks=NEEDS_ALL_SERVICES)]

# Hostile kinds a worker refuses before reading them (bench/chaos/hostile.py):
# all but the two valid calls, `system-exit` and `hostile-route`.
REFUSED_KINDS = 10

# A few hundred calls per phase and two kills: enough for a kill to land
# while calls are in flight, small enough for CI.
CI = Size(
    "ci", calls=100, kill_calls=800, kills=2, db_outage_s=5, outage_s=5, flood_rounds=1,
    oversized=1 << 20, bomb=1 << 20, settle_s=2, deadline_s=60, busy_ms=2,
)  # fmt: skip


@pytest.fixture(scope="session")
def probe(run_folder: Path) -> tuple[Path, str]:
    """The probe's git repository and a venv cache shared by every agent of the run."""
    folder = made_once(run_folder / "chaos", make_repo)
    (folder / "venvs").mkdir(exist_ok=True)
    return folder / "venvs", f"file://{folder / 'probe-repo'}"


@pytest.fixture
def real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chaos stack makes its schema and virtual host on the test servers (and
    runs a private redis-server of its own)."""
    monkeypatch.setenv("PYFI_CHAOS_DB", TEST_DB)
    monkeypatch.setenv("PYFI_CHAOS_AMQP", TEST_AMQP)


# The first deploy of a session builds the probe's virtualenv (pip install of pyfi).
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stack", STACKS)
def test_killing_workers_under_an_agent_loses_no_call(
    stack: str, probe: tuple[Path, str], tmp_path: Path, real_services: None
) -> None:
    # Given the probe deployed by an agent, answering calls
    venv_cache, repo = probe
    # When workers are killed with SIGKILL while it works through hundreds of calls
    result = kill_workers(Run(CI, tmp_path, venv_cache, repo), stack)
    # Then kills happened, and the agent replaced every killed worker
    assert result.extra["kills"] >= 1, result
    assert result.worker_restarts >= result.extra["kills"], result
    assert result.agent_survived, result
    assert result.workers_alive == result.workers_wanted, result
    # And every call has its outcome: none lost
    assert result.sent == 2 * CI.kill_calls
    assert result.lost == 0, result
    assert result.results == result.sent
    assert result.errors == 0, result
    # And every call ran; one ran twice only if a worker died while holding it
    assert result.executed == result.sent, result
    assert result.duplicated == result.duplicated_by_death, result


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(broker_outage, id="broker", marks=NEEDS_ALL_SERVICES),
        pytest.param(database_outage, id="database", marks=NEEDS_ALL_SERVICES),
        pytest.param(redis_outage, id="redis", marks=NEEDS_ALL_SERVICES),
    ],
)
def test_an_outage_of_a_service_loses_and_repeats_nothing(
    case: Callable[[Run, str], CaseResult],
    probe: tuple[Path, str],
    tmp_path: Path,
    real_services: None,
) -> None:
    # Given the probe deployed by an agent that reaches the service through a relay
    venv_cache, repo = probe
    # When the relay is cut for a few seconds while calls keep coming, then restored
    result = case(Run(CI, tmp_path, venv_cache, repo), "real")
    # Then every call has its outcome, none ran twice
    assert result.sent > 0
    assert result.lost == 0, result
    assert result.results == result.sent, result
    assert result.errors == 0, result
    assert result.executed == result.sent, result
    assert result.duplicated == 0, result
    # And the agent stayed up and no worker had to be replaced: they rode it out
    assert result.agent_survived, result
    assert result.workers_alive == result.workers_wanted, result
    assert result.worker_restarts == 0, result


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stack", STACKS)
def test_a_hostile_flood_is_dead_lettered_once_and_valid_calls_go_on(
    stack: str, probe: tuple[Path, str], tmp_path: Path, real_services: None
) -> None:
    # Given the probe deployed by an agent
    venv_cache, repo = probe
    # When every hostile kind is published straight to its queue among valid calls
    result = hostile_flood(Run(CI, tmp_path, venv_cache, repo), stack)
    # Then every valid call has its outcome, once
    assert result.lost == 0, result
    assert result.results == result.sent, result
    assert result.duplicated == 0, result
    # And each refused kind was dead-lettered once with its reason, and none of them ran
    refused = sum(n for reason, n in result.dead_letters.items() if reason.startswith("undecod"))
    assert refused == REFUSED_KINDS * CI.flood_rounds, result.dead_letters
    assert result.failures == [], result.failures
    # And the processes survived it, the worker log growing by a few lines only
    assert result.agent_survived, result
    assert result.worker_restarts == 0, result
    assert result.worker_log_growth is not None
    assert result.worker_log_growth < 16_384 * REFUSED_KINDS, result.worker_log_growth
