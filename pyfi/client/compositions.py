"""``pipeline``, ``parallel`` and ``funnel``: compositions that run on the mesh.

Building a composition sends nothing. Running it (calling it) compiles it to
a plan (:mod:`pyfi.workflow.plan`), publishes its first calls and returns a
:class:`~pyfi.client.results.Result` on the run's tracking id; the workers do
the rest. Compositions nest freely and can be reused: each run gets fresh ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyfi.client.connection import or_default
from pyfi.client.functions import Signature
from pyfi.client.results import Result
from pyfi.errors import InvalidValue
from pyfi.workflow.engine import NO_INPUT
from pyfi.workflow.plan import FUNNEL, PARALLEL, PIPELINE

if TYPE_CHECKING:
    from pyfi.client.calls import Client

Step = Any  # Signature | Composition


class Composition:
    """Steps run in some order; subclasses say which and what the result is."""

    kind: str = ""

    def __init__(self, steps: Sequence[Step], *, client: Client | None = None) -> None:
        self.steps = _checked_steps(self.kind, steps)
        self.client = client

    def plan(self, node_id: str, client: Client) -> dict[str, Any]:
        """This composition as a plan node, its steps numbered below ``node_id``."""
        return {
            "kind": self.kind,
            "id": node_id,
            "steps": [step.plan(f"{node_id}.{i}", client) for i, step in enumerate(self.steps)],
        }

    def run(self, value: Any = NO_INPUT, *, client: Client | None = None) -> Result:
        """Start one run; ``value``, if given, is the input of the first step(s)."""
        chosen = or_default(client or self.client)
        tracking_id = chosen.start_flow(self.plan("0", chosen), value)
        return Result(tracking_id, client=chosen)

    def __call__(self, *value: Any) -> Result:
        """Start one run, with the one optional ``value`` as its input."""
        if len(value) > 1:
            raise InvalidValue(f"a {self.kind} takes at most one input value")
        return self.run(*value)

    def __repr__(self) -> str:
        return f"{self.kind}([{', '.join(map(repr, self.steps))}])"


class Pipeline(Composition):
    """Each step's result is the next step's input; the last result is the pipeline's."""

    kind = PIPELINE


class Parallel(Composition):
    """Every step runs at once on the same input; the result lists theirs, in order."""

    kind = PARALLEL


class Funnel(Composition):
    """A parallel whose list of results feeds ``callback``, exactly once."""

    kind = FUNNEL

    def __init__(
        self, steps: Sequence[Step], callback: Step | None = None, *, client: Client | None = None
    ) -> None:
        super().__init__(steps, client=client)
        self.callback = _checked_step("funnel callback", callback) if callback else None

    def plan(self, node_id: str, client: Client) -> dict[str, Any]:
        node = super().plan(node_id, client)
        node["callback"] = self.callback.plan(f"{node_id}.cb", client) if self.callback else None
        return node

    def __call__(self, *callback: Any) -> Result:
        """Run, with ``callback`` (if given) receiving the list of results.

        ``_funnel(do_something("Four"))`` in the reference gives the callback
        at run time; ``funnel([...], callback)`` gives it up front.
        """
        if len(callback) > 1:
            raise InvalidValue("a funnel takes at most one callback")
        if not callback:
            return self.run()
        if self.callback is not None:
            raise InvalidValue("this funnel already has a callback; call it without one")
        with_callback = Funnel(self.steps, callback[0], client=self.client)
        return with_callback.run()


def pipeline(steps: Sequence[Step], *, client: Client | None = None) -> Pipeline:
    """Steps in sequence, each result flowing into the next step."""
    return Pipeline(steps, client=client)


def parallel(steps: Sequence[Step], *, client: Client | None = None) -> Parallel:
    """Steps at once; the result is the list of their results, in order."""
    return Parallel(steps, client=client)


def funnel(
    steps: Sequence[Step], callback: Step | None = None, *, client: Client | None = None
) -> Funnel:
    """Steps at once, their results gathered into ``callback`` (exactly once)."""
    return Funnel(steps, callback, client=client)


def _checked_steps(kind: str, steps: Sequence[Step]) -> tuple[Step, ...]:
    if isinstance(steps, Signature | Composition) or not isinstance(steps, Sequence):
        raise InvalidValue(f"a {kind} takes a list of steps, e.g. {kind}([a.p(1), b.p(2)])")
    if not steps:
        raise InvalidValue(f"a {kind} needs at least one step")
    return tuple(_checked_step(f"{kind} step {i + 1}", step) for i, step in enumerate(steps))


def _checked_step(what: str, step: Step) -> Step:
    if isinstance(step, Signature | Composition):
        return step
    if isinstance(step, Result):
        raise InvalidValue(
            f"the {what} is a call already sent (a Result); use the socket's partial, "
            "socket.p(...), inside compositions"
        )
    raise InvalidValue(
        f"the {what} is a {type(step).__name__}, not a socket partial or a composition; "
        "use socket.p(...)"
    )
