"""The agent's deployer: deploys off the caller's thread, each failure its processor's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from pyfi.agent import deployer as deployer_module
from pyfi.agent.deployer import Deployed, Deployer, Deploying, Failed, Key
from pyfi.errors import RepoNotAllowed

KEY: Key = ("file:///repo", "main", None, None, "sample", ("double",))

State = Deployed[str] | Deploying | Failed


def settle(deployer: Deployer[str], name: str, key: Key = KEY, timeout: float = 10.0) -> State:
    """The state of ``name`` once its deploy has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = deployer.state(name, key)
        if not isinstance(state, Deploying):
            return state
        time.sleep(0.01)
    raise AssertionError(f"the deploy of {name} did not finish within {timeout}s")


def deploy_raising(exc: BaseException, bad: str = "bad") -> Callable[[str, Key], str]:
    def deploy(name: str, key: Key) -> str:
        if name == bad:
            raise exc
        return f"deployed {name}"

    return deploy


def test_a_deploy_that_raises_anything_fails_its_processor_alone() -> None:
    # Given a deploy that fails one processor with an error pyfi does not know
    deployer = Deployer(deploy_raising(OSError(28, "No space left on device")))
    # Then that processor failed, with a one-line reason naming the error
    bad = settle(deployer, "bad")
    assert isinstance(bad, Failed)
    assert bad.reason == "OSError: [Errno 28] No space left on device"
    assert not bad.refused
    assert bad.retry_in_s > 0
    # And the other one deployed
    assert settle(deployer, "good") == Deployed("deployed good")


def test_a_refused_repository_is_a_refusal() -> None:
    deployer = Deployer(deploy_raising(RepoNotAllowed("not in allowed_repos")))
    bad = settle(deployer, "bad")
    assert isinstance(bad, Failed)
    assert (bad.reason, bad.refused) == ("not in allowed_repos", True)


def test_a_long_deploy_does_not_hold_up_the_caller_or_the_others() -> None:
    # Given a deploy of one processor that takes until released
    release = threading.Event()

    def deploy(name: str, key: Key) -> str:
        if name == "slow":
            release.wait(30)
        return f"deployed {name}"

    deployer = Deployer(deploy)
    try:
        # Then asking about it answers at once, and another processor deploys meanwhile
        assert deployer.state("slow", KEY) == Deploying()
        assert settle(deployer, "quick") == Deployed("deployed quick")
        assert deployer.state("slow", KEY) == Deploying()
        assert deployer.deploying() == ["slow"]
    finally:
        release.set()
    assert settle(deployer, "slow") == Deployed("deployed slow")


def test_a_failed_deploy_is_retried_after_its_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployer_module, "RETRY_BACKOFF_S", (0.2,))
    attempts: list[str] = []

    def deploy(name: str, key: Key) -> str:
        attempts.append(name)
        if len(attempts) == 1:
            raise RuntimeError("git: command not found")
        return "deployed"

    deployer = Deployer(deploy)
    failed = settle(deployer, "proc")
    assert isinstance(failed, Failed)
    # Before the backoff is over, it is not tried again
    assert isinstance(deployer.state("proc", KEY), Failed)
    assert attempts == ["proc"]
    # After it, it is, and succeeds
    time.sleep(0.3)
    assert settle(deployer, "proc") == Deployed("deployed")
    assert attempts == ["proc", "proc"]


def test_a_new_commit_is_deployed_without_waiting_for_the_old_ones_backoff() -> None:
    deployer = Deployer(deploy_raising(RuntimeError("boom"), bad="proc"))
    assert isinstance(settle(deployer, "proc"), Failed)
    # A different key is a new deploy (which fails again here, but is attempted at once)
    other: Key = ("file:///repo", "main", "abc123", None, "sample", ("double",))
    assert deployer.state("proc", other) == Deploying()
