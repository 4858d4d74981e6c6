"""Whether a network, as declared, can run: cycles, and arguments its functions lack.

Three problems are found over the meta-model, without running anything:

``cycle``
    Enabled plugs that lead from a socket back to itself. A message entering
    one would circulate for ever, so a cycle must be intended: its closing
    plug is marked ``loop`` and is then not counted.
``unknown-argument``
    An enabled plug binds an argument that the target's function cannot take
    by name (a typo, a positional-only parameter, ``*args``). Plugs deliver
    their value as a keyword, so the call would fail with a TypeError on every
    message.
``unfed-argument``
    A waiting socket (a join) fires once every plug bound to an argument has
    delivered; if some required parameter has no plug, every call fails.

Arguments can only be checked against a function whose signature a worker
recorded (``Task.inspected``, see :mod:`pyfi.network.signature`); the other
sockets are listed by :func:`unchecked_sockets`, not guessed at.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pyfi.db import models
from pyfi.errors import InvalidNetwork

CYCLE = "cycle"
UNKNOWN_ARGUMENT = "unknown-argument"
UNFED_ARGUMENT = "unfed-argument"

# Kinds a plug can deliver to by name (it passes its value as a keyword).
NAMED_KINDS = frozenset({"positional_or_keyword", "keyword_only"})

# Enough to fix a network by; a dense graph can hold exponentially many.
MAX_CYCLES = 100


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the network: a code and a one-line message saying what to do."""

    code: str
    message: str


def network_problems(session: Session) -> list[Problem]:
    """Every problem of the whole network: cycles, then unknown and unfed arguments.

    At most :data:`MAX_CYCLES` cycles are reported; fixing them reveals the rest.
    """
    sockets, plugs = _load(session)
    problems = [Problem(CYCLE, _cycle_message(cycle)) for cycle in _cycles(sockets, plugs)]
    problems += [p for p in map(_argument_problem, plugs) if p is not None]
    incoming = _incoming(plugs)
    problems += [p for s in sockets if (p := _unfed_problem(s, incoming.get(s.id, []))) is not None]
    return problems


def unchecked_sockets(session: Session) -> list[str]:
    """Names of sockets whose arguments matter but whose function was never inspected.

    A socket's arguments matter when it waits (a join) or an enabled plug is
    bound to one of them; until a worker records the function's signature,
    neither can be checked.
    """
    sockets, plugs = _load(session)
    bound = {p.target_id for p in plugs if p.enabled and p.argument is not None}
    return [s.name for s in sockets if s.task.inspected is None and (s.wait or s.id in bound)]


def unfed_problems(session: Session, socket: models.Socket) -> list[Problem]:
    """The required arguments of a waiting ``socket`` that no enabled incoming plug supplies.

    Not an error while a network is built plug by plug, so the CLI shows it
    as a warning after each plug.
    """
    incoming = session.scalars(
        select(models.Plug)
        .where(models.Plug.target_id == socket.id)
        .options(selectinload(models.Plug.argument))
    ).all()
    problem = _unfed_problem(socket, incoming)
    return [problem] if problem is not None else []


def check_plug(session: Session, plug: models.Plug) -> None:
    """Refuse a plug that closes an unmarked cycle or binds an argument its target lacks.

    Called after the plug is created or changed (and flushed), inside the
    caller's transaction, which the exception rolls back. A disabled plug
    takes no part in the network and is not checked.

    Raises
    ------
    InvalidNetwork
        The plug closes a cycle (and is not marked ``loop``), or binds an
        argument the target's inspected function cannot take by name.
    """
    if not plug.enabled:
        return
    if not plug.loop:
        cycle = _cycle_through(session, plug)
        if cycle is not None and len(cycle) == 1:
            raise InvalidNetwork(
                f"plug {_hop(plug)} feeds its own source, a cycle; remove it, or mark it "
                "as intended with --loop"
            )
        if cycle is not None:
            hops = ", ".join(_hop(p) for p in cycle)
            raise InvalidNetwork(
                f"plug {_hop(plug)} closes a cycle: {hops}; remove one of them, or mark "
                f"{plug.name} as intended with --loop"
            )
    problem = _argument_problem(plug)
    if problem is not None:
        raise InvalidNetwork(problem.message)


def check_network(session: Session) -> None:
    """Refuse a network that has any problem :func:`network_problems` finds.

    Raises
    ------
    InvalidNetwork
        With the first problem, and how many more there are.
    """
    problems = network_problems(session)
    if not problems:
        return
    more = len(problems) - 1
    suffix = f" (and {more} more; run `flow validate`)" if more else ""
    raise InvalidNetwork(problems[0].message + suffix)


# -- loading -------------------------------------------------------------


def _load(session: Session) -> tuple[list[models.Socket], list[models.Plug]]:
    """Every socket (with its task's arguments) and every plug, by name."""
    sockets = session.scalars(
        select(models.Socket)
        .options(selectinload(models.Socket.task).selectinload(models.Task.arguments))
        .order_by(models.Socket.name)
    ).all()
    # Sockets are in the identity map now, so each plug's source and target
    # resolve without another query.
    plugs = session.scalars(
        select(models.Plug).options(selectinload(models.Plug.argument)).order_by(models.Plug.name)
    ).all()
    return list(sockets), list(plugs)


def _incoming(plugs: Iterable[models.Plug]) -> dict[object, list[models.Plug]]:
    incoming: dict[object, list[models.Plug]] = defaultdict(list)
    for plug in plugs:
        incoming[plug.target_id].append(plug)
    return incoming


# -- cycles --------------------------------------------------------------


def _counted(plug: models.Plug) -> bool:
    """Whether a plug is an edge of the graph that cycles are looked for in."""
    return plug.enabled and not plug.loop


def _cycles(
    sockets: Sequence[models.Socket], plugs: Sequence[models.Plug]
) -> list[list[models.Plug]]:
    """Each elementary cycle once, as its plugs in order, starting nearest the network's entry."""
    edges: dict[tuple[str, str], list[models.Plug]] = defaultdict(list)
    for plug in plugs:
        if _counted(plug):
            edges[(plug.source.name, plug.target.name)].append(plug)
    successors: dict[str, list[str]] = {s.name: [] for s in sockets}
    for source, target in sorted(edges):
        if source != target:
            successors[source].append(target)
    depth = _depths(successors)
    cycles: list[list[models.Plug]] = []
    node_cycles = itertools.chain(
        ([name] for name in sorted(successors) if (name, name) in edges),
        _simple_cycles(successors),
    )
    for found in node_cycles:
        start = min(range(len(found)), key=lambda i: (depth[found[i]], found[i]))
        nodes = found[start:] + found[:start]
        hops = [edges[(a, b)] for a, b in zip(nodes, nodes[1:] + nodes[:1], strict=True)]
        for combination in itertools.product(*hops):
            cycles.append(list(combination))
            if len(cycles) >= MAX_CYCLES:
                return cycles
    return cycles


def _depths(successors: dict[str, list[str]]) -> dict[str, float]:
    """Each socket's distance from a socket that nothing feeds (inf when none leads to it)."""
    fed = {t for targets in successors.values() for t in targets}
    depth: dict[str, float] = {name: math.inf for name in successors}
    frontier = deque(name for name in successors if name not in fed)
    for name in frontier:
        depth[name] = 0
    while frontier:
        name = frontier.popleft()
        for target in successors[name]:
            if depth[target] == math.inf:
                depth[target] = depth[name] + 1
                frontier.append(target)
    return depth


def _simple_cycles(successors: dict[str, list[str]]) -> Iterator[list[str]]:
    """Johnson's algorithm: every elementary cycle of a graph without self-edges, once."""
    pending = [c for c in _components(successors) if len(c) > 1]
    while pending:
        component = set(pending.pop())
        graph = {n: [t for t in successors[n] if t in component] for n in component}
        start = min(component)
        yield from _cycles_from(graph, start)
        del graph[start]
        rest = {n: [t for t in targets if t != start] for n, targets in graph.items()}
        pending.extend(c for c in _components(rest) if len(c) > 1)


def _cycles_from(graph: dict[str, list[str]], start: str) -> Iterator[list[str]]:
    """The elementary cycles through ``start`` of one strongly connected ``graph``."""
    path = [start]
    blocked = {start}
    blockers: dict[str, set[str]] = defaultdict(set)
    stack = [iter(graph[start])]
    closed = [False]
    while stack:
        for node in stack[-1]:
            if node == start:
                yield list(path)
                closed[-1] = True
            elif node not in blocked:
                path.append(node)
                closed.append(False)
                stack.append(iter(graph[node]))
                blocked.add(node)
                break
        else:
            stack.pop()
            node = path.pop()
            if closed.pop():
                if closed:
                    closed[-1] = True
                _unblock(node, blocked, blockers)
            else:
                for target in graph[node]:
                    blockers[target].add(node)


def _unblock(node: str, blocked: set[str], blockers: dict[str, set[str]]) -> None:
    todo = [node]
    while todo:
        current = todo.pop()
        if current in blocked:
            blocked.discard(current)
            todo.extend(blockers.pop(current, ()))


def _components(successors: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (networks may be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(successors):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(successors[root]))]
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(successors[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _cycle_through(session: Session, plug: models.Plug) -> list[models.Plug] | None:
    """The shortest cycle through ``plug``, ending with it, or None."""
    if plug.source_id == plug.target_id:
        return [plug]
    outgoing: dict[object, list[models.Plug]] = defaultdict(list)
    for other in session.scalars(
        select(models.Plug)
        .where(models.Plug.enabled.is_(True), models.Plug.loop.is_(False))
        .order_by(models.Plug.name)
    ):
        outgoing[other.source_id].append(other)
    # Breadth first from the plug's target back to its source.
    came_by: dict[object, models.Plug | None] = {plug.target_id: None}
    frontier = deque([plug.target_id])
    while frontier:
        node = frontier.popleft()
        if node == plug.source_id:
            path: list[models.Plug] = []
            while (step := came_by[node]) is not None:
                path.append(step)
                node = step.source_id
            return [*reversed(path), plug]
        for other in outgoing[node]:
            if other.target_id not in came_by:
                came_by[other.target_id] = other
                frontier.append(other.target_id)
    return None


def _arrow(plug: models.Plug) -> str:
    return f"{plug.source.name} → {plug.target.name}"


def _hop(plug: models.Plug) -> str:
    return f"{plug.name} ({_arrow(plug)})"


def _cycle_message(cycle: Sequence[models.Plug]) -> str:
    closing = cycle[-1].name
    mark = f"`flow update plug -n {closing} --loop`"
    if len(cycle) == 1:
        return (
            f"plug {_hop(cycle[0])} feeds its own source, a cycle; remove it, or mark it "
            f"as intended with {mark}"
        )
    hops = ", ".join(_hop(p) for p in cycle)
    return (
        f"plugs {hops} form a cycle; remove one, or mark the one that closes it as "
        f"intended with {mark}"
    )


# -- arguments -----------------------------------------------------------


def _parameters(task: models.Task) -> list[models.Argument]:
    """The task's recorded parameters in order (rows only plugs named are left out)."""
    recorded = [a for a in task.arguments if a.kind is not None]
    return sorted(recorded, key=lambda a: (a.position if a.position is not None else 0, a.name))


def signature_text(task: models.Task) -> str:
    """The recorded signature as Python would show it, defaults elided: ``f(a, b=..., **kw)``."""
    parts: list[str] = []
    parameters = _parameters(task)
    starred = False
    for number, argument in enumerate(parameters):
        kind = argument.kind
        if kind == "keyword_only" and not starred:
            parts.append("*")
            starred = True
        if kind == "var_positional":
            parts.append(f"*{argument.name}")
            starred = True
        elif kind == "var_keyword":
            parts.append(f"**{argument.name}")
        else:
            parts.append(argument.name if argument.required else f"{argument.name}=...")
        following = parameters[number + 1].kind if number + 1 < len(parameters) else None
        if kind == "positional_only" and following != "positional_only":
            parts.append("/")
    return f"{task.name}({', '.join(parts)})"


_WHY_NOT = {
    None: "has no such parameter",
    "positional_only": "takes it only by position",
    "var_positional": "collects extra positional arguments in it, which take no name",
}


def _argument_problem(plug: models.Plug) -> Problem | None:
    """The plug's argument, if the inspected target function cannot take it by name."""
    argument = plug.argument
    task = plug.target.task
    if not plug.enabled or argument is None or task.inspected is None:
        return None
    parameters = _parameters(task)
    if argument.kind in NAMED_KINDS or any(p.kind == "var_keyword" for p in parameters):
        return None
    choices = [p.name for p in parameters if p.kind in NAMED_KINDS]
    todo = (
        f"choose one of: {', '.join(choices)}"
        if choices
        else "drop the argument so the plug passes its value as the first positional argument"
    )
    return Problem(
        UNKNOWN_ARGUMENT,
        f"plug {plug.name} binds argument {argument.name!r}, but {signature_text(task)} of "
        f"socket {plug.target.name} {_WHY_NOT.get(argument.kind, 'cannot take it')}; {todo}",
    )


def _unfed_problem(socket: models.Socket, incoming: Iterable[models.Plug]) -> Problem | None:
    task = socket.task
    if not socket.wait or task.inspected is None:
        return None
    fed = {p.argument.name for p in incoming if p.enabled and p.argument is not None}
    if not fed:
        return None
    missing = [
        p.name
        for p in _parameters(task)
        if p.required and p.kind in NAMED_KINDS and p.name not in fed
    ]
    if not missing:
        return None
    if len(missing) == 1:
        todo = (
            f"add a plug with `--target {socket.name} --argument {missing[0]}`, "
            "or give the parameter a default"
        )
    else:
        todo = (
            f"add a plug with `--target {socket.name} --argument NAME` for each, "
            "or give the parameters defaults"
        )
    names = ", ".join(repr(name) for name in missing)
    return Problem(
        UNFED_ARGUMENT,
        f"socket {socket.name} waits for every argument of {signature_text(task)}, but no "
        f"enabled plug supplies {names}; {todo}",
    )
