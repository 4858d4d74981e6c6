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
from pyfi.limits import DEFAULT_LIMITS

CALL, PIPELINE, PARALLEL, FUNNEL = "call", "pipeline", "parallel", "funnel"
# The most branches of one group (see pyfi.limits.WireLimits.max_group_size).
MAX_GROUP_SIZE = DEFAULT_LIMITS.max_group_size
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


def check_node(node: Any, max_group_size: int = MAX_GROUP_SIZE) -> dict[str, Any]:
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
    if len(steps) > max_group_size:
        raise MessageDecodeError(
            f"the flow {kind} {node['id']:.40} has {len(steps)} steps, over the limit of "
            f"{max_group_size}"
        )
    for step in steps:
        check_node(step, max_group_size)
    if kind == FUNNEL and node.get("callback") is not None:
        check_node(node["callback"], max_group_size)
    return node


def check_frames(frames: Any, max_group_size: int = MAX_GROUP_SIZE) -> list[dict[str, Any]]:
    """The frames of a received message, if every one is well formed.

    A group's ``size`` is bounded: joining its branches allocates one entry
    per branch, so a frame claiming 10⁹ branches must be refused, not served.
    """
    if not isinstance(frames, list):
        raise MessageDecodeError("the flow's frames are not a list")
    for frame in frames:
        kind = frame.get("kind") if isinstance(frame, dict) else None
        if kind == PIPELINE:
            rest = frame.get("rest")
            if not isinstance(rest, list) or not rest:
                raise MessageDecodeError("a pipeline frame has no steps left")
            # the step started next; the others when their turn comes
            check_node(rest[0], max_group_size)
        elif kind in GROUPS:
            index, size = frame.get("index"), frame.get("size")
            if not (type(index) is int and type(size) is int and 0 <= index < size):
                raise MessageDecodeError(f"a {kind} frame has a bad index/size")
            if size > max_group_size:
                raise MessageDecodeError(
                    f"a {kind} frame has {size} branches, over the limit of {max_group_size}"
                )
            if not isinstance(frame.get("id"), str):
                raise MessageDecodeError(f"a {kind} frame has no id")
            if frame.get("callback") is not None:
                check_node(frame["callback"], max_group_size)
        else:
            raise MessageDecodeError(f"a flow frame of unknown kind {kind!r}")
    return frames


def sockets_started(frames: list[dict[str, Any]]) -> set[str]:
    """The sockets that the (checked) ``frames`` may send calls to once their call is done.

    A worker resolves each in the model before it runs the call: it sends a
    flow's calls along the routes the model gives, never along those a
    message carries.
    """
    nodes: list[dict[str, Any]] = []
    for frame in frames:
        if frame["kind"] == PIPELINE:
            nodes.append(frame["rest"][0])
        elif frame.get("callback") is not None:
            nodes.append(frame["callback"])
    sockets: set[str] = set()
    while nodes:
        node = nodes.pop()
        if node["kind"] == CALL:
            sockets.add(node["socket"])
            continue
        nodes.extend(node["steps"])
        if node.get("callback") is not None:
            nodes.append(node["callback"])
    return sockets


def count_calls(node: dict[str, Any]) -> int:
    """How many socket calls one run of ``node`` makes."""
    if node["kind"] == CALL:
        return 1
    total = sum(count_calls(step) for step in node["steps"])
    if node.get("callback") is not None:
        total += count_calls(node["callback"])
    return total
