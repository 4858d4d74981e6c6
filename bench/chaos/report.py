"""What a case measured, how it is printed, and which targets it met.

The targets are the hardening issue's: no lost call, no re-execution caused
by anything but a worker's death, every process alive at the end, every
hostile message dead-lettered once and none executed, a killed worker
replaced within 2 s. A case reports what it saw; ``failures`` lists the
targets it missed, so a run says honestly what does not hold yet.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

REPLACEMENT_TARGET_S = 2.0
SLOWDOWN_TARGET = 1.5


@dataclass
class CaseResult:
    """The figures of one case on one stack."""

    case: str
    stack: str
    size: str
    sent: int = 0
    results: int = 0  # outcomes stored (ok or error) for the calls sent
    errors: int = 0  # of which the function's failure
    lost: int = 0  # sent, no outcome by the deadline
    queued: int | None = None  # messages still in the socket's queue at the end
    executed: int = 0  # distinct valid calls the function ran
    duplicated: int = 0  # valid calls whose function ran more than once
    duplicated_by_death: int = 0  # of which an earlier run was on a worker that was killed
    recovery_s: float | None = None  # see ``recovery_means``
    recovery_means: str = ""
    agent_survived: bool = True
    agent_exit: int | None = None
    workers_alive: int = 0  # at the end, of ``workers_wanted``
    workers_wanted: int = 0
    worker_restarts: int = 0  # worker processes started after the first ones
    worker_log_growth: int | None = None  # bytes, hostile flood only
    peak_worker_rss_mb: float = 0.0
    dead_letters: dict[str, int] = field(default_factory=dict)  # reason -> count
    extra: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str = ""

    def judge(self) -> None:
        """Fill ``failures`` with the targets this case missed."""
        if self.skipped:
            return
        missed = self.failures
        if self.lost:
            missed.append(f"{self.lost} calls lost")
        unexplained = self.duplicated - self.duplicated_by_death
        if unexplained:
            missed.append(f"{unexplained} calls re-executed without a worker's death")
        if not self.agent_survived:
            missed.append(f"the agent exited ({self.agent_exit})")
        if self.workers_alive < self.workers_wanted:
            missed.append(f"{self.workers_alive} of {self.workers_wanted} workers alive")

    @property
    def passed(self) -> bool:
        return not self.skipped and not self.failures


def print_result(result: CaseResult) -> None:
    """The case's figures, one per line, then its verdict."""
    head = f"== {result.case} [{result.stack}, {result.size}]"
    if result.skipped:
        print(f"{head}: skipped ({result.skipped})")
        return
    print(f"{head}  {result.seconds:.1f}s")
    recovery = "-" if result.recovery_s is None else f"{result.recovery_s:.2f}s"
    lines = [
        ("calls sent", result.sent),
        ("results", f"{result.results} ({result.errors} errors)"),
        ("lost (no outcome)", f"{result.lost} ({_queued(result.queued)} still queued)"),
        ("executed (distinct)", result.executed),
        ("duplicated side effects", f"{result.duplicated} "
         f"({result.duplicated_by_death} after a worker's death)"),
        ("time to recover", f"{recovery}  [{result.recovery_means}]"),
        ("agent survived", "yes" if result.agent_survived else f"no (exit {result.agent_exit})"),
        ("workers alive at end", f"{result.workers_alive}/{result.workers_wanted}"),
        ("worker restarts", result.worker_restarts),
        ("peak worker RSS", f"{result.peak_worker_rss_mb:.0f} MB"),
    ]  # fmt: skip
    if result.worker_log_growth is not None:
        lines.append(("worker log growth", f"{result.worker_log_growth} bytes"))
    lines.append(("dead letters", sum(result.dead_letters.values())))
    for label, value in lines:
        print(f"  {label:<26}{value}")
    for reason, count in sorted(result.dead_letters.items(), key=lambda item: -item[1]):
        print(f"    {count:>5}  {reason}")
    for label, value in result.extra.items():
        print(f"  {label:<26}{value}")
    verdict = "PASS" if result.passed else "FAIL: " + "; ".join(result.failures)
    print(f"  {'verdict':<26}{verdict}")


def _queued(count: int | None) -> str:
    return "?" if count is None else str(count)


def summary(results: list[CaseResult]) -> str:
    """One line per case: a table to paste into docs/reliability.md."""
    header = ("case", "stack", "sent", "results", "lost", "dup (by death)", "recover", "agent",
              "workers", "restarts", "verdict")  # fmt: skip
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if r.skipped:
            continue
        recovery = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        rows.append(
            f"| {r.case} | {r.stack} | {r.sent} | {r.results} | {r.lost} | "
            f"{r.duplicated} ({r.duplicated_by_death}) | {recovery} | "
            f"{'up' if r.agent_survived else 'exited'} | {r.workers_alive}/{r.workers_wanted} | "
            f"{r.worker_restarts} | {verdict} |"
        )
    return "\n".join(rows)


def reason_key(reason: object) -> str:
    """A dead letter's reason, shortened so that letters of one cause group together."""
    text = str(reason)
    return text if len(text) <= 90 else text[:87] + "..."


def count_reasons(letters: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(reason_key(letter.get("reason")) for letter in letters))


def to_json(results: list[CaseResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
