"""The JSON form of a composition, as it travels inside call messages.

A plan is a tree of nodes, each a plain JSON object with a ``kind``:

``{"kind": "call", "id": ..., "socket": ..., "route": {...}, "args": [...], "kwargs": {...},
"into": ...}``
    One socket function with the arguments bound by ``Socket.p(...)``. The
    value flowing in from the previous step is appended to ``args`` when
    ``into`` is null (as :func:`functools.partial` would), passed as the
    keyword ``into`` when it is a name, and dropped when it is false.
``{"kind": "pipeline", "id": ..., "steps": [node, ...]}``
    Each step's result flows into the next; the last one's is the pipeline's.
``{"kind": "parallel", "id": ..., "steps": [node, ...]}``
    Every step gets the same input; the result is the list of their results,
    in the order of the steps.
``{"kind": "funnel", "id": ..., "steps": [node, ...], "callback": node | null}``
    A parallel whose list of results flows into ``callback``, exactly once.

Node ids are paths in the tree (``"0"``, ``"0.2"``, ``"0.2.cb"``): unique in a
plan, so a node started in a run names that run's one execution of it, and
the ids of the calls it makes can be derived from it.

A message carries the *frames* of its call: what is left to do after it,
innermost first. They reference only the parts of the plan still to run, so a
message stays small however far along the flow is.

``{"kind": "pipeline", "rest": [node, ...]}``
    The steps still to run after this one.
``{"kind": "parallel" | "funnel", "id": ..., "index": i, "size": n, "callback": node | null}``
    This call's branch is number ``i`` of ``n`` of that node's join.

Plans come off the wire, so :func:`check_frames` checks the shape of what a
worker is about to act on and refuses anything else with a clear reason. Only
that: the later steps of a pipeline are checked when a worker reaches them
(checking the whole rest at every step made a step's cost grow with the
pipeline's length).
"""

from __future__ import annotations

from typing import Any

from pyfi.broker.topology import SocketRoute
from pyfi.errors import MessageDecodeError

CALL, PIPELINE, PARALLEL, FUNNEL = "call", "pipeline", "parallel", "funnel"
GROUPS = (PARALLEL, FUNNEL)
KINDS = (CALL, PIPELINE, PARALLEL, FUNNEL)


def route_to_json(route: SocketRoute) -> dict[str, Any]:
    """A socket's broker route as JSON, so a worker can publish to any socket of a plan."""
    return {
        "socket": route.socket,
        "exchange": route.exchange,
        "exchange_type": route.exchange_type,
        "durable": route.durable,
        "arguments": dict(route.arguments),
    }


def route_from_json(data: Any) -> SocketRoute:
    """The route of a plan's call node; refuses a malformed one."""
    if not isinstance(data, dict):
        raise MessageDecodeError("a call of the flow has no route object")
    try:
        return SocketRoute(
            socket=str(data["socket"]),
            exchange=str(data["exchange"]),
            exchange_type=str(data.get("exchange_type", "direct")),
            durable=bool(data.get("durable", True)),
            arguments=dict(data.get("arguments") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageDecodeError(f"a call of the flow has a malformed route: {exc}") from exc


def check_node(node: Any) -> dict[str, Any]:
    """``node`` if it is a well-formed plan node (checked all the way down)."""
    if not isinstance(node, dict) or node.get("kind") not in KINDS:
        raise MessageDecodeError(f"a flow node is not one of {', '.join(KINDS)}: {node!r:.80}")
    if not isinstance(node.get("id"), str):
        raise MessageDecodeError("a flow node has no string id")
    kind = node["kind"]
    if kind == CALL:
        if not isinstance(node.get("socket"), str) or not isinstance(node.get("args", []), list):
            raise MessageDecodeError(f"the flow call {node['id']} has no socket or bad args")
        if not isinstance(node.get("kwargs", {}), dict):
            raise MessageDecodeError(f"the flow call {node['id']} has bad kwargs")
        route_from_json(node.get("route"))
        return node
    steps = node.get("steps")
    if not isinstance(steps, list) or not steps:
        raise MessageDecodeError(f"the flow {kind} {node['id']} has no steps")
    for step in steps:
        check_node(step)
    if kind == FUNNEL and node.get("callback") is not None:
        check_node(node["callback"])
    return node


def check_frames(frames: Any) -> list[dict[str, Any]]:
    """The frames of a received message, if every one is well formed."""
    if not isinstance(frames, list):
        raise MessageDecodeError("the flow's frames are not a list")
    for frame in frames:
        kind = frame.get("kind") if isinstance(frame, dict) else None
        if kind == PIPELINE:
            rest = frame.get("rest")
            if not isinstance(rest, list) or not rest:
                raise MessageDecodeError("a pipeline frame has no steps left")
            check_node(rest[0])  # the step started next; the others when their turn comes
        elif kind in GROUPS:
            index, size = frame.get("index"), frame.get("size")
            if not (isinstance(index, int) and isinstance(size, int) and 0 <= index < size):
                raise MessageDecodeError(f"a {kind} frame has a bad index/size")
            if not isinstance(frame.get("id"), str):
                raise MessageDecodeError(f"a {kind} frame has no id")
            if frame.get("callback") is not None:
                check_node(frame["callback"])
        else:
            raise MessageDecodeError(f"a flow frame of unknown kind {kind!r}")
    return frames


def count_calls(node: dict[str, Any]) -> int:
    """How many socket calls one run of ``node`` makes."""
    if node["kind"] == CALL:
        return 1
    total = sum(count_calls(step) for step in node["steps"])
    if node.get("callback") is not None:
        total += count_calls(node["callback"])
    return total
