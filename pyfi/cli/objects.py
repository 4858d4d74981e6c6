"""`flow add | update | delete <kind>`: built from one option table per kind.

Each kind's options are declared once in :data:`FIELDS`; the add command marks
some of them required, the update command makes them all optional and selects
the object by ``-n NAME``. The work itself is done by :mod:`pyfi.objects`,
inside one transaction per command.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from pyfi import objects
from pyfi.cli.context import FlowGroup, flow_context
from pyfi.cli.password import password_options, take_password
from pyfi.db.enums import Misfire, PlugType, QueueType, RequestedStatus, Right, Strategy
from pyfi.masking import mask_urls_in


def _choice(enum_class: type[enum.Enum]) -> click.Choice[str]:
    return click.Choice([str(member.value) for member in enum_class], case_sensitive=False)


def _warn_of_credentials(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Say so when a URL given as an argument carries a credential (see pyfi.masking)."""
    if value is not None and mask_urls_in(value) != value:
        flag = max(param.opts, key=len)
        click.echo(
            f"warning: the {flag} value carries a credential, which `ps` and shell history "
            "show to others; declare it in a file instead (`flow compose apply FILE`"
            + (", or --requirements @FILE)" if flag == "--requirements" else ")"),
            err=True,
        )
    return value


def _read_requirements(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--requirements @file`` reads the specifiers from a requirements file."""
    if value is None or not value.startswith("@"):
        return _warn_of_credentials(ctx, param, value)
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Field:
    """One option of a kind: its flags, the field it sets, and click settings."""

    decls: tuple[str, ...]
    key: str
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    required: bool = False  # on `flow add`
    update_only: bool = False

    def option(self, *, for_add: bool) -> click.Option:
        kwargs: dict[str, Any] = {"help": self.help, "default": None, **self.kwargs}
        if for_add:
            kwargs["required"] = self.required
        return click.Option([*self.decls, self.key], **kwargs)


NAME = Field(("-n", "--name"), "name", "Name of the object.", required=True)
DESCRIPTION = Field(("-d", "--description"), "description", "Free text shown in listings.")
ENABLED = Field(("--enabled/--disabled",), "enabled", "Whether it takes part in the network.")

FIELDS: Mapping[str, Sequence[Field]] = {
    "queue": (
        NAME,
        Field(
            ("-t", "--type"),
            "type",
            "Exchange type [default: direct].",
            {"type": _choice(QueueType)},
        ),
        Field(("--durable/--transient",), "durable", "Survive broker restarts [default: durable]."),
        Field(
            ("--max-length",), "max_length", "Most messages held (unset: no limit).", {"type": int}
        ),
        Field(
            ("--max-length-bytes",),
            "max_length_bytes",
            "Most bytes held (unset: no limit).",
            {"type": int},
        ),
        Field(
            ("--message-ttl",),
            "message_ttl",
            "Milliseconds a message may wait (unset: forever).",
            {"type": int},
        ),
        Field(
            ("--expires",),
            "expires",
            "Milliseconds an unused queue lives (unset: forever).",
            {"type": int},
        ),
        DESCRIPTION,
    ),
    "processor": (
        NAME,
        Field(("-m", "--module"), "module", "Python module, e.g. some.module.path.", required=True),
        Field(
            ("-g", "--gitrepo"),
            "gitrepo",
            "Git repository URL.",
            {"callback": _warn_of_credentials},
            required=True,
        ),
        Field(("-h", "--hostname"), "hostname", "Run only on this host's agent."),
        Field(
            ("-c", "--concurrency"),
            "concurrency",
            "Worker processes, at most one per CPU.",
            {"type": int},
        ),
        Field(("-br", "--branch"), "branch", "Git branch [default: main]."),
        Field(("--commit",), "commit", "Git commit to run (default: the branch head)."),
        Field(
            ("-r", "--retries"), "retries", "Retries of a failing call [default: 0].", {"type": int}
        ),
        Field(
            ("--retry-delay",),
            "retry_delay",
            "Seconds before the first retry [default: 1].",
            {"type": int},
        ),
        Field(
            ("--timelimit",),
            "timelimit",
            "Seconds a call may run; past it its process is killed and the call fails "
            "(TimeLimitExceeded). Calls then run in child processes of the worker.",
            {"type": int},
        ),
        Field(
            ("-rq", "--requirements"),
            "requirements",
            "Extra pip requirements, or @FILE to read a requirements file.",
            {"callback": _read_requirements},
        ),
        Field(("-mp", "--modulepath"), "modulepath", "Path of the module inside the repository."),
        Field(
            ("-b", "--beat/--no-beat"),
            "beat",
            "Stored for the reference's shape; schedules fire without it.",
        ),
        Field(
            ("-rs", "--requested-status"),
            "requested_status",
            "What agents should make of it.",
            {"type": _choice(RequestedStatus)},
        ),
        DESCRIPTION,
        ENABLED,
    ),
    "socket": (
        NAME,
        Field(("-q", "--queue"), "queue", "Queue the socket's messages go through.", required=True),
        Field(
            ("-pn", "--processor"), "processor", "Processor hosting the function.", required=True
        ),
        Field(("-t", "--task"), "task", "Function name in the processor's module.", required=True),
        Field(("--wait/--no-wait",), "wait", "Fire only when every plug has delivered (a join)."),
        Field(("--interval",), "interval", "Call every N seconds.", {"type": int}),
        Field(("--cron",), "cron", "Call on a cron schedule, e.g. '*/5 * * * *'."),
        Field(("--timezone",), "timezone", "Time zone of the cron schedule [default: UTC]."),
        Field(
            ("--input",),
            "input",
            "JSON a scheduled call passes: an array (positional) or object (keyword arguments).",
        ),
        Field(
            ("--misfire",),
            "misfire",
            "Instants missed while no scheduler ran: skip (fire the latest only) or catch-up "
            "[default: skip].",
            {"type": _choice(Misfire)},
        ),
        Field(
            ("--catch-up",),
            "catch_up",
            "With --misfire catch-up, the most missed instants fired [default: 10].",
            {"type": int},
        ),
        DESCRIPTION,
        ENABLED,
    ),
    "plug": (
        NAME,
        Field(("-q", "--queue"), "queue", "Queue the plug delivers through.", required=True),
        Field(("-s", "--source"), "source", "Socket whose output feeds the plug.", required=True),
        Field(("-t", "--target"), "target", "Socket the plug delivers to.", required=True),
        Field(("-a", "--argument"), "argument", "Target argument to bind (default: first)."),
        Field(
            ("--type",),
            "type",
            "Carry the RESULT or the ERROR of the source [default: RESULT].",
            {"type": _choice(PlugType)},
        ),
        Field(
            ("--loop/--no-loop",),
            "loop",
            "Closes a cycle on purpose: validation does not count it [default: no-loop].",
        ),
        DESCRIPTION,
        ENABLED,
    ),
    "node": (
        NAME,
        Field(("-h", "--hostname"), "hostname", "Host name of the node.", required=True),
        Field(("--cpus",), "cpus", "CPUs of the node.", {"type": int}),
    ),
    "user": (
        NAME,
        Field(("-e", "--email"), "email", "E-mail address.", required=True),
        # The password options come from pyfi.cli.password (see PASSWORD_KINDS).
        Field(
            ("--add-role",),
            "add_role",
            "Give the user this role.",
            {"multiple": True, "default": ()},
            update_only=True,
        ),
        Field(
            ("--remove-role",),
            "remove_role",
            "Take this role away.",
            {"multiple": True, "default": ()},
            update_only=True,
        ),
        ENABLED,
    ),
    "role": (NAME,),
    "scheduler": (
        NAME,
        Field(
            ("-s", "--strategy"),
            "strategy",
            "Placement strategy [default: BALANCED].",
            {"type": _choice(Strategy)},
        ),
        DESCRIPTION,
        ENABLED,
    ),
}


# Kinds with a password: set through pyfi.cli.password, never from an argument.
PASSWORD_KINDS = frozenset({"user"})


def _password_params(kind_name: str) -> list[click.Parameter]:
    return password_options() if kind_name in PASSWORD_KINDS else []


def _describe_cascade(cascaded: Mapping[str, int]) -> str:
    if not cascaded:
        return ""
    parts = [
        f"{count} {kind if count != 1 else kind.rstrip('s')}" for kind, count in cascaded.items()
    ]
    return " and " + ", ".join(parts)


def _plug_warnings(session: Session, plug: Any) -> list[str]:
    # A join is completed plug by plug, so an unfed argument is only a warning here.
    from pyfi.network.validate import unfed_problems

    return [problem.message for problem in unfed_problems(session, plug.target)]


# Advice shown on stderr after a successful add or update, by kind.
WARNINGS: Mapping[str, Callable[[Session, Any], list[str]]] = {"plug": _plug_warnings}


def _warn(messages: Sequence[str]) -> None:
    for message in messages:
        click.echo(f"warning: {message}", err=True)


def _add_command(kind_name: str) -> click.Command:
    kind = objects.KINDS[kind_name]
    fields = [f for f in FIELDS[kind_name] if not f.update_only]
    warnings = WARNINGS.get(kind_name)

    def callback(**values: Any) -> None:
        flow = flow_context()
        if kind_name in PASSWORD_KINDS:
            take_password(values, flow.environ, required=True)
        with flow.transaction() as session:
            obj = objects.create(session, kind, values)
            advice = warnings(session, obj) if warnings else []
            click.echo(f"Added {kind_name} {obj.name} ({obj.id})")
        _warn(advice)

    return click.Command(
        kind_name,
        params=[*(f.option(for_add=True) for f in fields), *_password_params(kind_name)],
        callback=callback,
        help=f"Add a {kind_name} to the database.",
    )


def _update_command(kind_name: str) -> click.Command:
    kind = objects.KINDS[kind_name]
    params: list[click.Parameter] = [
        Field(("-n", "--name"), "name", f"Name of the {kind_name} to change.").option(for_add=True),
        click.Option(["--new-name", "new_name"], default=None, help="Rename it."),
        *(f.option(for_add=False) for f in FIELDS[kind_name] if f.key != "name"),
        *_password_params(kind_name),
    ]
    params[0].required = True
    warnings = WARNINGS.get(kind_name)

    def callback(name: str, **values: Any) -> None:
        flow = flow_context()
        if kind_name in PASSWORD_KINDS:
            take_password(values, flow.environ, required=False)
        add_roles = tuple(values.pop("add_role", ()))
        remove_roles = tuple(values.pop("remove_role", ()))
        changes = {k: v for k, v in values.items() if v is not None}
        advice: list[str] = []
        with flow.transaction() as session:
            if add_roles or remove_roles:
                user = objects.get_by_name(session, kind.model, name)
                objects.set_roles(session, user, add_roles, remove_roles)
            if changes or not (add_roles or remove_roles):
                obj = objects.update(session, kind, name, changes)
                name = obj.name
                advice = warnings(session, obj) if warnings else []
        click.echo(f"Updated {kind_name} {name}")
        _warn(advice)

    return click.Command(
        kind_name, params=params, callback=callback, help=f"Change fields of a {kind_name}."
    )


def _delete_command(kind_name: str) -> click.Command:
    kind = objects.KINDS[kind_name]

    def callback(name: str) -> None:
        with flow_context().transaction() as session:
            cascaded = objects.delete(session, kind, name)
        click.echo(f"Deleted {kind_name} {name}{_describe_cascade(cascaded)}")

    return click.Command(
        kind_name,
        params=[click.Option(["-n", "--name", "name"], required=True, help="Name to delete.")],
        callback=callback,
        help=f"Delete a {kind_name} (and what depends on it).",
    )


PRIVILEGE_OPTIONS: list[click.Parameter] = [
    click.Option(
        ["-n", "--name", "right"],
        required=True,
        type=_choice(Right),
        help="The right, e.g. ADD_PROCESSOR.",
    ),
    click.Option(["-u", "--user", "user"], default=None, help="User who holds it."),
    click.Option(["-r", "--role", "role"], default=None, help="Role that holds it."),
]


def _privilege_command(change: Any, verb: str, preposition: str) -> click.Command:
    """`flow add privilege` (grant) or `flow delete privilege` (revoke)."""

    def callback(right: str, user: str | None, role: str | None) -> None:
        with flow_context().transaction() as session:
            member = change(session, right, user=user, role=role)
        holders = " and ".join(x for x in (user and f"user {user}", role and f"role {role}") if x)
        click.echo(f"{verb} {member.value} {preposition} {holders}")

    return click.Command(
        "privilege",
        params=list(PRIVILEGE_OPTIONS),
        callback=callback,
        help=f"{verb.removesuffix('ed')} a right {preposition} a user or role.",
    )


def _group(name: str, help_text: str, factory: Any, *extra: click.Command) -> click.Group:
    group = FlowGroup(name, help=help_text)
    for kind_name in FIELDS:
        group.add_command(factory(kind_name))
    for command in extra:
        group.add_command(command)
    return group


add_group = _group(
    "add",
    "Add an object to the database.",
    _add_command,
    _privilege_command(objects.grant, "Granted", "to"),
)
update_group = _group("update", "Update a database object.", _update_command)
delete_group = _group(
    "delete",
    "Delete an object from the database.",
    _delete_command,
    _privilege_command(objects.revoke, "Revoked", "from"),
)
