"""`flow --config` (write the ini file) and `flow config show`."""

from __future__ import annotations

import click

from pyfi.cli.context import CliContext, FlowGroup, pass_flow
from pyfi.cli.render import print_json, print_table
from pyfi.config import (
    INI_KEYS,
    OPTION_NAMES,
    load_settings,
    mask_url,
    validate_uri,
    write_ini,
)

PROMPTS = {
    "database_url": "Database connection URI",
    "backend_url": "Result backend URI",
    "broker_url": "Message broker URI",
}


def write_config_file(flow: CliContext) -> None:
    """Write the ini file from the global options, asking for any not given.

    Every answer is validated (by loading the settings it would produce)
    before anything is written, and the file is written atomically with
    owner-only permissions because URIs may carry passwords.
    """
    # Lenient: the ini may not exist yet, or be the broken file being replaced.
    current = load_settings(flow.options, flow.environ, lenient_ini=True)
    values: dict[str, str] = {}
    for key, prompt in PROMPTS.items():
        given = flow.options.get(key)
        if given:
            # Checked now, stored as typed: it is normalised each time it is read.
            validate_uri(key, str(given), f"the --{OPTION_NAMES[key]} option")
            values[key] = str(given)
            continue
        existing = getattr(current, key)
        answer = click.prompt(
            f"{prompt} [{mask_url(existing)}]",
            default="",
            show_default=False,
            prompt_suffix=": ",
        )
        answer = answer.strip()
        if answer:
            validate_uri(key, answer, "your answer")
        values[key] = answer or existing
    write_ini(current.ini_path, values)
    click.echo(f"Configuration file created at {current.ini_path}")


@click.group("config", cls=FlowGroup)
def config_group() -> None:
    """Show the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_flow
def show(flow: CliContext, as_json: bool) -> None:
    """Print the effective settings (passwords masked) and where each came from."""
    settings = flow.settings
    masked = settings.masked()
    if as_json:
        print_json({**masked, "sources": dict(settings.sources)})
        return
    rows = [
        {"name": key, "value": masked[key], "source": settings.sources.get(key, "")}
        for key in (*INI_KEYS, "data_dir", "ini_path", "debug", "allowed_repos", "allowed_indexes")
    ]
    print_table([("Setting", "name"), ("Value", "value"), ("From", "source")], rows)
