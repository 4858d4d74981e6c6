"""`flow compose apply | export`: a whole network from a file, and back to one.

``apply`` reads a YAML file or a Python file of ``@processor``/``@socket``/
``@plug`` declarations and applies it in one transaction: every object lands,
or (on the first error) none does. ``export`` writes the database's network
as YAML that ``apply`` accepts.
"""

from __future__ import annotations

from pathlib import Path

import click

from pyfi.cli.context import FlowGroup, flow_context
from pyfi.errors import NetworkFileError
from pyfi.network.declare import ApplyReport, Network


class _DryRun(Exception):
    """Rolls the transaction back after a dry run, carrying its report."""

    def __init__(self, report: ApplyReport) -> None:
        super().__init__("dry run")
        self.report = report


@click.group("compose", cls=FlowGroup)
def compose_group() -> None:
    """Apply a network declared in a file, or export the network to one."""


@compose_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change, and write nothing.")
def apply_command(file: Path, dry_run: bool) -> None:
    """Create or update what FILE declares, in one transaction.

    FILE is YAML (.yaml, .yml; see `flow compose export`) or a Python file of
    @processor/@socket/@plug declarations (.py). Objects are matched by name
    and only fields that differ are written, so applying an unchanged file
    changes nothing.
    """
    from pyfi.auth.guard import rehearsal
    from pyfi.network.declare import apply

    network = read_network(file)
    try:
        with flow_context().transaction() as session:
            if not dry_run:
                report = apply(session, network)
            else:  # needs only READ: every write is rolled back
                with rehearsal(session):
                    raise _DryRun(apply(session, network))
    except _DryRun as rolled_back:
        report = rolled_back.report
    verb = "would apply" if dry_run else "applied"
    click.echo(f"{verb} {file.name}: {report.summary()}")
    for change in report.changes:
        if change.action == "unchanged":
            continue
        action = f"would {change.action.removesuffix('d')}" if dry_run else change.action
        detail = f" ({', '.join(change.fields)})" if change.action == "updated" else ""
        click.echo(f"  {action} {change.kind} {change.name}{detail}")


@compose_group.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE instead of standard output.",
)
@click.option(
    "--with-secrets", is_flag=True, help="Write git URLs with their passwords (unmasked)."
)
def export_command(output: Path | None, with_secrets: bool) -> None:
    """Write the network (queues, processors, sockets, plugs) as YAML."""
    from pyfi.auth.guard import require
    from pyfi.db.enums import Right
    from pyfi.network.yamlio import export_yaml

    with flow_context().transaction() as session:
        require(session, Right.READ, "export the network")
        text = export_yaml(session, with_secrets=with_secrets)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NetworkFileError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"exported the network to {output}")


def read_network(file: Path) -> Network:
    """The network FILE declares, by its suffix.

    Raises
    ------
    NetworkFileError
        An unsupported suffix, or a file that cannot be read or loaded.
    """
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        from pyfi.network.yamlio import load_yaml

        return load_yaml(file)
    if suffix == ".py":
        from pyfi.network.module import load_network

        return load_network(file)
    raise NetworkFileError(f"cannot apply {file}: expected a .yaml, .yml or .py file")
