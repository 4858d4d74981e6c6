"""Running a composition: start a plan, and move it on as each of its calls finishes.

The client only *starts* a flow (it publishes the first calls). Every later
step is taken by the worker that finished the call before it, from the
frames that call's message carried; that is why a client may exit while its
flow runs, and fetch the result later by the flow's id.

Exactly-once where it matters, at-least-once elsewhere, like the rest of the
mesh:

* every call a flow makes has an id derived from the run and the node
  (``derived_id(tracking_id, "flow", node_id)``): each node runs once per run,
  so a step re-sent after a crash carries the same id as the first sending;
* a parallel or funnel gathers its branches with the result backend's join,
  whose claimant rule lets exactly one finishing branch fire the rest of the
  flow (and the same one again if its worker crashed before acking);
* the flow's outcome is stored under its tracking id, which is the id a
  client's handle waits on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyfi.backend.base import DEFAULT_JOIN_TTL_S, DEFAULT_RESULT_TTL_S
from pyfi.broker.topology import SocketRoute
from pyfi.message import Message, derived_id
from pyfi.outcome import failed, succeeded
from pyfi.workflow.plan import (
    CALL,
    FUNNEL,
    GROUPS,
    MAX_GROUP_SIZE,
    PIPELINE,
    check_frames,
    route_from_json,
)

Publish = Callable[[Message, SocketRoute], None]
# The route to send a plan's call node along.
RouteOf = Callable[[dict[str, Any]], SocketRoute]
PublishMany = Callable[[list[tuple[Message, SocketRoute]]], None]
# The messages a step starts, published together once it is known what they are.
Outbox = list[tuple[Message, SocketRoute]]


class _NoInput:
    """The input of a flow's first steps: nothing, which differs from ``None``."""

    def __repr__(self) -> str:
        return "NO_INPUT"


NO_INPUT: Any = _NoInput()


def route_in_plan(node: dict[str, Any]) -> SocketRoute:
    """The route a plan's call node holds (the client's own plans only)."""
    return route_from_json(node["route"])


def join_name(node_id: str) -> str:
    """The result backend's join key (in place of a socket name) for a group node."""
    return f"flow:{node_id}"


def flow_call_id(tracking_id: str, node_id: str) -> str:
    """The id of the one call a run makes for a call node."""
    return derived_id(tracking_id, "flow", node_id)


@dataclass
class FlowDriver:
    """Starts plans and advances them; shared by the client and the workers.

    ``backend`` is a :class:`pyfi.backend.ResultBackend`; ``publish`` sends one
    message to a route with publisher confirms. ``route_of`` says where a
    call node goes: by default the route the plan holds, which suits the
    client that built it from the model; a worker, reading plans off the
    wire, looks the node's socket up in the model instead.
    """

    backend: Any
    publish: Publish
    # Publishes a batch with confirms awaited together (a funnel starts many calls at once).
    publish_many: PublishMany | None = None
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    join_ttl_s: int = DEFAULT_JOIN_TTL_S
    route_of: RouteOf = field(default=route_in_plan)
    max_group_size: int = MAX_GROUP_SIZE

    # -- starting -------------------------------------------------------
    def begin(self, plan: dict[str, Any], tracking_id: str, value: Any = NO_INPUT) -> None:
        """Publish the first calls of a new run of ``plan``."""
        out: Outbox = []
        self._start(plan, value, [], tracking_id, None, out)
        self._publish(out)

    def _publish(self, out: Outbox) -> None:
        """Send what a step started: one confirm window for many, a plain publish for one."""
        if self.publish_many is not None and len(out) > 1:
            self.publish_many(out)
            return
        for message, route in out:
            self.publish(message, route)

    def _start(
        self,
        node: dict[str, Any],
        value: Any,
        frames: list[dict[str, Any]],
        tracking_id: str,
        parent_id: str | None,
        out: Outbox,
    ) -> None:
        kind = node["kind"]
        if kind == CALL:
            out.append(self._message(node, value, frames, tracking_id, parent_id))
        elif kind == PIPELINE:
            steps = node["steps"]
            rest = [{"kind": PIPELINE, "rest": steps[1:]}] if len(steps) > 1 else []
            self._start(steps[0], value, rest + frames, tracking_id, parent_id, out)
        else:
            size = len(node["steps"])
            for index, step in enumerate(node["steps"]):
                frame = {"kind": kind, "id": node["id"], "index": index, "size": size}
                if kind == FUNNEL:
                    frame["callback"] = node.get("callback")
                self._start(step, value, [frame, *frames], tracking_id, parent_id, out)

    def _message(
        self,
        node: dict[str, Any],
        value: Any,
        frames: list[dict[str, Any]],
        tracking_id: str,
        parent_id: str | None,
    ) -> tuple[Message, SocketRoute]:
        args, kwargs = list(node.get("args", [])), dict(node.get("kwargs", {}))
        into = node.get("into")
        if value is not NO_INPUT and into is not False:
            if into:
                kwargs[str(into)] = value
            else:
                args.append(value)
        message = Message(
            call_id=flow_call_id(tracking_id, node["id"]),
            tracking_id=tracking_id,
            socket=node["socket"],
            args=args,
            kwargs=kwargs,
            parent_id=parent_id,
            flow={"frames": frames},
        )
        return message, self.route_of(node)

    # -- advancing --------------------------------------------------------
    def advance(self, call: Message, value: Any) -> None:
        """Take the flow on from ``call``, which finished with ``value``.

        Joins fired on the way are forgotten only after everything they caused
        is published, so a crash in between re-fires them (same claimant, same
        ids) instead of losing the rest of the flow.
        """
        out, fired = self.next_steps(call, value)
        self._publish(out)
        self.release(fired)

    def next_steps(self, call: Message, value: Any) -> tuple[Outbox, list[tuple[str, str]]]:
        """What :meth:`advance` publishes after ``call``, and the joins it fired.

        For a caller that publishes the messages itself (with others, or
        without waiting on the broker's confirm); once they are confirmed it
        must :meth:`release` the joins. A flow that ends here has its outcome
        stored before this returns.
        """
        assert call.flow is not None
        frames = check_frames(call.flow.get("frames"), self.max_group_size)
        fired: list[tuple[str, str]] = []
        out: Outbox = []
        self._complete(value, frames, call, fired, out)
        return out, fired

    def release(self, fired: list[tuple[str, str]]) -> None:
        """Forget the joins :meth:`next_steps` fired: what they caused is published."""
        for tracking_id, name in fired:
            self.backend.complete_join(tracking_id, name)

    def fail(self, call: Message, error: dict[str, Any]) -> None:
        """A step failed for good: the flow fails with that step's error.

        The first failure is kept; a later one (another branch) does not hide
        it.
        """
        if self.backend.get(call.tracking_id) is not None:
            return
        outcome = failed({**error, "call_id": call.call_id})
        self.backend.store(call.tracking_id, outcome, self.result_ttl_s)

    def _complete(
        self,
        value: Any,
        frames: list[dict[str, Any]],
        call: Message,
        fired: list[tuple[str, str]],
        out: Outbox,
    ) -> None:
        while frames:
            frame, frames = frames[0], frames[1:]
            if frame["kind"] == PIPELINE:
                step, rest = frame["rest"][0], frame["rest"][1:]
                after = [{"kind": PIPELINE, "rest": rest}] if rest else []
                self._start(step, value, after + frames, call.tracking_id, call.call_id, out)
                return
            assert frame["kind"] in GROUPS
            gathered = self._gather(frame, value, call, fired)
            if gathered is None:
                return  # other branches are still running
            if frame.get("callback") is not None:
                callback = frame["callback"]
                self._start(callback, gathered, frames, call.tracking_id, call.call_id, out)
                return
            value = gathered
        self.backend.store(call.tracking_id, succeeded(value), self.result_ttl_s)

    def _gather(
        self,
        frame: dict[str, Any],
        value: Any,
        call: Message,
        fired: list[tuple[str, str]],
    ) -> list[Any] | None:
        name = join_name(frame["id"])
        expected = [str(index) for index in range(frame["size"])]
        values = self.backend.join(
            call.tracking_id,
            name,
            str(frame["index"]),
            json.dumps(value),
            expected,
            call.call_id,
            self.join_ttl_s,
        )
        if values is None:
            return None
        fired.append((call.tracking_id, name))
        return [json.loads(values[index]) for index in expected]
