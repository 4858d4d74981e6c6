"""`flow ls`: list objects as tables or JSON, and show one object with its relations."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from pyfi import objects, provenance
from pyfi.auth.guard import Target, require
from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.cli.render import (
    FOCUS_MARK,
    call_label,
    note,
    print_json,
    print_record,
    print_table,
    print_tree,
)
from pyfi.db import models
from pyfi.db.enums import UNFINISHED_STATES, Right
from pyfi.db.serialize import to_dict
from pyfi.errors import InvalidValue, ObjectNotFound

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@dataclass(frozen=True)
class Listing:
    """How one kind is listed: its columns and the related names it shows."""

    kind: str
    plural: str
    model: type[Any]
    columns: Sequence[tuple[str, str]]
    extras: Callable[[Any], dict[str, Any]] = field(default=lambda _obj: {})  # no related names
    eager: Sequence[Any] = ()

    def record(self, obj: Any) -> dict[str, Any]:
        """Every column of ``obj`` plus the names of what it refers to."""
        return {**to_dict(obj, raw=True), **self.extras(obj)}


def _liveness(agent: models.Agent) -> str:
    """An agent's status as stored, unless its heartbeat is too old to believe."""
    from datetime import UTC, datetime

    from pyfi.agent.placement import is_stale
    from pyfi.db.enums import AgentStatus

    if agent.status is AgentStatus.ONLINE and is_stale(agent.heartbeat, datetime.now(UTC)):
        return "offline (no heartbeat)"
    return agent.status.value


def _schedule(socket: models.Socket) -> str | None:
    if socket.interval:
        return f"every {socket.interval}s"
    return f"cron {socket.cron}" if socket.cron else None


LISTINGS: Mapping[str, Listing] = {
    listing.kind: listing
    for listing in (
        Listing(
            "processor",
            "processors",
            models.Processor,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Module", "module"),
                ("Git repo", "gitrepo"),
                ("Branch", "branch"),
                ("Commit", "commit"),
                ("Host", "hostname"),
                ("Concurrency", "concurrency"),
                ("Status", "status"),
                ("Requested", "requested_status"),
                ("Reason", "status_reason"),
                ("Owner", "owner"),
                ("Updated", "updated"),
            ],
            # gitrepo, requirements and status_reason are masked by to_dict.
        ),
        Listing(
            "socket",
            "sockets",
            models.Socket,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Processor", "processor"),
                ("Task", "task"),
                ("Queue", "queue"),
                ("Wait", "wait"),
                ("Schedule", "schedule"),
                ("Enabled", "enabled"),
                ("Owner", "owner"),
                ("Updated", "updated"),
            ],
            extras=lambda s: {
                "processor": s.processor.name,
                "task": s.task.name,
                "queue": s.queue.name,
                "schedule": _schedule(s),
            },
            eager=(
                selectinload(models.Socket.processor),
                selectinload(models.Socket.task),
                selectinload(models.Socket.queue),
            ),
        ),
        Listing(
            "plug",
            "plugs",
            models.Plug,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Type", "type"),
                ("Source", "source"),
                ("Target", "target"),
                ("Argument", "argument"),
                ("Queue", "queue"),
                ("Enabled", "enabled"),
                ("Owner", "owner"),
            ],
            extras=lambda p: {
                "source": p.source.name,
                "target": p.target.name,
                "argument": p.argument.name if p.argument else None,
                "queue": p.queue.name,
            },
            eager=(
                selectinload(models.Plug.source),
                selectinload(models.Plug.target),
                selectinload(models.Plug.queue),
                selectinload(models.Plug.argument),
            ),
        ),
        Listing(
            "queue",
            "queues",
            models.Queue,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Type", "type"),
                ("Durable", "durable"),
                ("Max length", "max_length"),
                ("Message TTL (ms)", "message_ttl"),
                ("Expires (ms)", "expires"),
                ("Owner", "owner"),
                ("Updated", "updated"),
            ],
        ),
        Listing(
            "node",
            "nodes",
            models.Node,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Hostname", "hostname"),
                ("CPUs", "cpus"),
                ("Memory used %", "memused"),
                ("Load", "cpuload"),
                ("Agent", "agent"),
                ("Status", "status"),
                ("Updated", "updated"),
            ],
            extras=lambda n: {
                "agent": n.agent.name if n.agent else None,
                "status": _liveness(n.agent) if n.agent else "no agent",
            },
            eager=(selectinload(models.Node.agent),),
        ),
        Listing(
            "agent",
            "agents",
            models.Agent,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Hostname", "hostname"),
                ("CPUs", "cpus"),
                ("Port", "port"),
                ("PID", "pid"),
                ("Status", "status"),
                ("Heartbeat", "heartbeat"),
            ],
            extras=lambda a: {"status": _liveness(a)},
        ),
        Listing(
            "worker",
            "workers",
            models.Worker,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Host", "hostname"),
                ("PID", "pid"),
                ("Concurrency", "concurrency"),
                ("Status", "status"),
                ("Workdir", "workdir"),
                ("Started", "started"),
            ],
        ),
        Listing(
            "user",
            "users",
            models.User,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Email", "email"),
                ("Roles", "roles"),
                ("Privileges", "privileges"),
                ("Enabled", "enabled"),
                ("Owner", "owner"),
            ],
            extras=lambda u: {
                "roles": [r.name for r in u.roles],
                "privileges": [p.name.value for p in u.privileges],
            },
            eager=(selectinload(models.User.roles), selectinload(models.User.privileges)),
        ),
        Listing(
            "role",
            "roles",
            models.Role,
            [("Name", "name"), ("ID", "id"), ("Privileges", "privileges"), ("Owner", "owner")],
            extras=lambda r: {"privileges": [p.name.value for p in r.privileges]},
            eager=(selectinload(models.Role.privileges),),
        ),
        Listing(
            "scheduler",
            "schedulers",
            models.Scheduler,
            [
                ("Name", "name"),
                ("ID", "id"),
                ("Strategy", "strategy"),
                ("Enabled", "enabled"),
                ("Owner", "owner"),
            ],
        ),
    )
}


def _list_right(listing: Listing) -> Right:
    """``LS_<PLURAL>`` where the reference has one, else ``READ_<KIND>``, else ``READ``."""
    for name in (f"LS_{listing.plural.upper()}", f"READ_{listing.kind.upper()}"):
        if name in Right.__members__:
            return Right[name]
    return Right.READ


def _show_right(listing: Listing) -> Right:
    """``READ_<KIND>`` where the reference has one, else the listing's right."""
    name = f"READ_{listing.kind.upper()}"
    return Right[name] if name in Right.__members__ else _list_right(listing)


@click.group("ls", cls=FlowGroup)
def ls_group() -> None:
    """List database objects and their relations."""


def _list_command(listing: Listing) -> click.Command:
    @json_option
    @pass_flow
    def callback(flow: CliContext, as_json: bool) -> None:
        with flow.transaction() as session:
            require(session, _list_right(listing), f"list {listing.plural}")
            query = select(listing.model).options(*listing.eager).order_by(listing.model.name)
            records = [listing.record(obj) for obj in session.scalars(query)]
        if as_json:
            print_json(records)
        elif records:
            print_table(listing.columns, records)
        else:
            note(f"No {listing.plural} yet.")

    return click.Command(
        listing.plural,
        params=callback.__click_params__,  # type: ignore[attr-defined]
        callback=callback,
        help=f"List {listing.plural}.",
    )


def _show_command(listing: Listing) -> click.Command:
    @click.option("-n", "--name", required=True, help=f"Name of the {listing.kind}.")
    @json_option
    @pass_flow
    def callback(flow: CliContext, name: str, as_json: bool) -> None:
        with flow.transaction() as session:
            require(
                session, _show_right(listing), f"read {listing.plural}", Target(listing.kind, name)
            )
            obj = objects.get_by_name(session, listing.model, name)
            record = listing.record(obj)
            related = RELATED[listing.kind](session, obj) if listing.kind in RELATED else {}
        if as_json:
            print_json({listing.kind: record, **{k: v[1] for k, v in related.items()}})
            return
        print_record(
            {header: record.get(key) for header, key in listing.columns},
            title=f"{listing.kind.capitalize()} {name}",
        )
        for title, (columns, rows) in related.items():
            if rows:
                print_table(columns, rows, title=title.capitalize())
            else:
                note(f"No {title}.")

    return click.Command(
        listing.kind,
        params=callback.__click_params__,  # type: ignore[attr-defined]
        callback=callback,
        help=f"Show one {listing.kind} and its relations.",
    )


Related = dict[str, tuple[Sequence[tuple[str, str]], list[dict[str, Any]]]]


def _processor_related(session: Session, processor: models.Processor) -> Related:
    sockets = LISTINGS["socket"]
    plugs = LISTINGS["plug"]
    socket_ids = [s.id for s in processor.sockets]
    plug_rows = session.scalars(
        select(models.Plug)
        .options(*plugs.eager)
        .where(or_(models.Plug.source_id.in_(socket_ids), models.Plug.target_id.in_(socket_ids)))
        .order_by(models.Plug.name)
    )
    return {
        "sockets": (sockets.columns, [sockets.record(s) for s in processor.sockets]),
        "plugs": (plugs.columns, [plugs.record(p) for p in plug_rows]),
    }


def _user_related(_session: Session, user: models.User) -> Related:
    rows = [{"right": p.name.value, "via": "direct"} for p in user.privileges]
    rows += [
        {"right": p.name.value, "via": f"role {role.name}"}
        for role in user.roles
        for p in role.privileges
    ]
    # A revocation beats every grant above (see docs/security.md, "Rights").
    rows += [{"right": p.name.value, "via": "revoked"} for p in user.revoked]
    return {"privileges": ([("Right", "right"), ("Granted", "via")], rows)}


RELATED: Mapping[str, Callable[[Session, Any], Related]] = {
    "processor": _processor_related,
    "user": _user_related,
}

for _listing in LISTINGS.values():
    ls_group.add_command(_list_command(_listing))
    ls_group.add_command(_show_command(_listing))


@ls_group.command("privileges")
@json_option
@pass_flow
def list_privileges(flow: CliContext, as_json: bool) -> None:
    """List every granted right and who holds it."""
    with flow.transaction() as session:
        require(session, Right.READ_PRIVILEGE, "list privileges")
        rows = [
            {"right": p.name.value, "holder": "user", "name": u.name}
            for u in session.scalars(
                select(models.User).options(selectinload(models.User.privileges))
            )
            for p in u.privileges
        ] + [
            {"right": p.name.value, "holder": "role", "name": r.name}
            for r in session.scalars(
                select(models.Role).options(selectinload(models.Role.privileges))
            )
            for p in r.privileges
        ]
    rows.sort(key=lambda row: (row["right"], row["holder"], row["name"]))
    if as_json:
        print_json(rows)
    elif rows:
        print_table([("Right", "right"), ("Holder", "holder"), ("Name", "name")], rows)
    else:
        note("No privileges granted yet.")


# `flow ls calls` counts matching calls up to this many (or the page's end,
# if further): past it, the total is only "more than".
COUNT_CAP = 10_000

CALL_COLUMNS = [
    ("Name", "name"),
    ("ID", "id"),
    ("Owner", "owner"),
    ("Last Updated", "updated"),
    ("Tracking", "tracking_id"),
    ("Started", "started"),
    ("Finished", "finished"),
    ("State", "state"),
]


@ls_group.command("calls")
@click.option("-p", "--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("-r", "--rows", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("-u", "--unfinished", is_flag=True, help="Only calls that have not finished.")
@click.option("-a", "--ascend", is_flag=True, help="Oldest first.")
@click.option("-s", "--socket", default=None, help="Only calls of this socket.")
@click.option("-t", "--tracking", default=None, help="Only calls of this flow run.")
@json_option
@pass_flow
def list_calls(
    flow: CliContext,
    page: int,
    rows: int,
    unfinished: bool,
    ascend: bool,
    socket: str | None,
    tracking: str | None,
    as_json: bool,
) -> None:
    """List calls, newest first, a page at a time."""
    query = select(models.Call)
    if unfinished:
        query = query.where(models.Call.state.in_(UNFINISHED_STATES))
    if socket:
        query = query.where(models.Call.name == socket)
    if tracking:
        query = query.where(models.Call.tracking_id == _parse_id(tracking, "tracking id"))
    # Counting every matching call would read the whole table on every page;
    # counting stops a good way past the page asked for.
    cap = max(COUNT_CAP, page * rows)
    with flow.transaction() as session:
        require(session, Right.READ, "list calls")
        counted = (
            session.scalar(select(func.count()).select_from(query.limit(cap + 1).subquery())) or 0
        )
        order = models.Call.created.asc() if ascend else models.Call.created.desc()
        found = session.scalars(query.order_by(order).offset((page - 1) * rows).limit(rows))
        records = [to_dict(call, raw=True) for call in found]
    exact = counted <= cap
    total = counted if exact else cap
    if as_json:
        print_json(
            {"page": page, "rows": rows, "total": total if exact else None}
            | ({} if exact else {"more_than": cap})
            | {"calls": records}
        )
        return
    pages = max(1, math.ceil(total / rows))
    for index, record in enumerate(records, start=1):
        record["page"], record["row"] = page, index
    print_table([("Page", "page"), ("Row", "row"), *CALL_COLUMNS], records)
    if exact:
        click.echo(f"Page {page} of {pages} of {total} total records")
    else:
        click.echo(f"Page {page} of more than {pages} (more than {cap} records)")


@ls_group.command("call")
@click.option("--id", "call_id", required=True, help="ID of the call.")
@click.option("-r", "--result", "with_result", is_flag=True, help="Include the call's result.")
@click.option("-t", "--tree", is_flag=True, help="Draw the calls this call caused, recursively.")
@click.option(
    "-g", "--graph", is_flag=True, help="Draw the whole call graph of this call, marking it."
)
@click.option(
    "-f", "--flow", "whole_flow", is_flag=True, help="List every call of this call's flow run."
)
@json_option
@pass_flow
def show_call(
    flow: CliContext,
    call_id: str,
    with_result: bool,
    tree: bool,
    graph: bool,
    whole_flow: bool,
    as_json: bool,
) -> None:
    """Show one call with its provenance and events (and its result)."""
    views = [name for name, on in (("tree", tree), ("graph", graph), ("flow", whole_flow)) if on]
    asked = [f"--{name}" for name in views] + (["--result"] if with_result else [])
    if views and len(asked) > 1:
        raise InvalidValue(f"{' and '.join(asked)} cannot be combined; choose one view of the call")
    if views:
        SHOW_PROVENANCE[views[0]](flow, call_id, as_json)
        return
    wanted = _parse_id(call_id, "call id")
    with flow.transaction() as session:
        require(session, Right.READ, "read calls", Target("call", call_id))
        call = session.get(models.Call, wanted, options=[selectinload(models.Call.events)])
        if call is None:
            raise ObjectNotFound("call", call_id, provenance.NOT_FOUND_HINT, by="with id")
        record = to_dict(call, raw=True)
        events = provenance.call_events(call)
        lineage = {
            "parent_id": call.parent_id,
            "tracking_id": call.tracking_id,
            "children": provenance.count_children(session, call),
        }
    # The backend keys results by the canonical id, not by how it was typed.
    outcome = _stored_outcome(flow, str(wanted)) if with_result else None
    if as_json:
        print_json(
            {
                "call": record,
                "events": events,
                "provenance": lineage,
                **({"result": outcome} if with_result else {}),
            }
        )
        return
    print_table(CALL_COLUMNS, [record], title="Call")
    print_table(
        [
            ("Task", "id"),
            ("Parent", "parent_id"),
            ("Tracking", "tracking_id"),
            ("Child calls", "children"),
        ],
        [{**record, **lineage}],
        title="Provenance",
    )
    print_table(
        [
            ("Name", "name"),
            ("ID", "id"),
            ("Owner", "owner"),
            ("Created", "created"),
            ("Note", "note"),
        ],
        events,
        title="Events",
    )
    if with_result:
        if outcome is None:
            note("No result stored (still running, or expired from the result backend).")
        else:
            print_record(outcome, title="Result")


def _show_tree(flow: CliContext, call_id: str, as_json: bool) -> None:
    with flow.transaction() as session:
        root = provenance.call_tree(session, call_id)
    if as_json:
        click.echo(provenance.tree_json(root))
    else:
        print_tree(root, lambda node: call_label(node, None), lambda node: node.children)


def _show_graph(flow: CliContext, call_id: str, as_json: bool) -> None:
    with flow.transaction() as session:
        root, focus = provenance.call_graph(session, call_id)
    if as_json:
        click.echo(provenance.tree_json(root, focus=focus))
    else:
        print_tree(root, lambda node: call_label(node, focus), lambda node: node.children)


def _show_flow(flow: CliContext, call_id: str, as_json: bool) -> None:
    with flow.transaction() as session:
        calls = provenance.flow_calls(session, call_id)
        records = [to_dict(call, raw=True) for call in calls]
    tracking = records[0]["tracking_id"]
    if as_json:
        print_json({"tracking_id": tracking, "total": len(records), "calls": records})
        return
    focus = provenance.parse_id(call_id, "call id")
    for index, record in enumerate(records, start=1):
        record["row"] = f"{index} {FOCUS_MARK}" if record["id"] == focus else index
    print_table([("Row", "row"), *CALL_COLUMNS, ("Parent", "parent_id")], records)
    click.echo(f"{len(records)} calls in flow run {tracking}")


SHOW_PROVENANCE: Mapping[str, Callable[[CliContext, str, bool], None]] = {
    "tree": _show_tree,
    "graph": _show_graph,
    "flow": _show_flow,
}


def _stored_outcome(flow: CliContext, call_id: str) -> dict[str, Any] | None:
    """The call's stored outcome (``status`` plus ``value`` or ``error``), if kept."""
    import json

    from pyfi.backend import open_backend

    with open_backend(flow.settings.backend_url) as backend:
        stored = backend.get(call_id)
    return json.loads(stored) if stored is not None else None


def _parse_id(value: str, what: str) -> uuid.UUID:
    return provenance.parse_id(value, what)


@ls_group.command("log")
@click.option("-u", "--user", default=None, help="Only this user's lines.")
@click.option(
    "--since", default=None, help="Only lines since a time (2026-12-07T10:00) or age (30m, 2h)."
)
@json_option
@pass_flow
def list_log(flow: CliContext, user: str | None, since: str | None, as_json: bool) -> None:
    """List the audit log: each checked action, who, which right, allowed or refused."""
    from pyfi.auth.audit import audit_lines, parse_since

    moment = parse_since(since) if since else None
    with flow.transaction() as session:
        require(session, Right.READ_LOG, "read the audit log")
        records = audit_lines(session, user=user, since=moment)
    if as_json:
        print_json(records)
    elif records:
        print_table([("Time", "created"), ("User", "user"), ("Line", "text")], records)
    else:
        note("No audit lines yet.")
