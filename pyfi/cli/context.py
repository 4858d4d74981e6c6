"""What every `flow` command shares: settings, the database, and error reporting.

This is the only place where a :class:`~pyfi.errors.FlowError` becomes an exit
code: 2 for a :class:`~pyfi.errors.UserError` (fix the input), 1 for anything
else (fix the environment). Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property, update_wrapper
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pyfi.config import Settings, load_settings
from pyfi.errors import FlowError, UserError
from pyfi.masking import mask_log_handlers, mask_urls_in

if TYPE_CHECKING:  # the ORM is slow to import, and many commands never need it
    from sqlalchemy.orm import Session

EXIT_USER_ERROR = 2
EXIT_SYSTEM_ERROR = 1

F = TypeVar("F", bound=Callable[..., Any])


class CliContext:
    """Per-invocation state, created by the root command and built lazily.

    Settings and the database are only loaded when a command needs them, so
    ``flow --help`` works even with a broken configuration.
    """

    def __init__(self, options: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.options = dict(options)
        self.environ = environ
        self._database: Any = None
        self._use_login = True

    @property
    def debug(self) -> bool:
        """True with ``--debug`` or ``PYFI_DEBUG=1``; never fails."""
        if self.options.get("debug"):
            return True
        return self.environ.get("PYFI_DEBUG", "").lower() in ("1", "true", "yes", "on")

    @cached_property
    def settings(self) -> Settings:
        """The effective settings of this invocation."""
        return load_settings(self.options, self.environ)

    @property
    def database(self) -> Any:
        """The meta-model database (a :class:`pyfi.db.session.Database`).

        With a login token (``flow login``, or ``PYFI_TOKEN``), its transactions
        act as the token's user: see :mod:`pyfi.auth.identify`.
        """
        if self._database is None:
            from pyfi.db.session import Database

            database = Database(self.settings.database_url)
            if self._use_login:
                from pyfi.auth.identify import use_token
                from pyfi.auth.token_store import find_token

                found = find_token(self.settings.database_url, self.environ)
                if found is not None:
                    use_token(database, found)
            self._database = database
        return self._database

    def without_login(self) -> None:
        """Act as the connection itself, ignoring any stored login.

        For the commands that must work whatever an old token says: logging
        in and out, and initialising a new database.
        """
        if self._database is not None:
            raise RuntimeError("without_login() must come before the database is used")
        self._use_login = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction for the whole command: all of it lands, or none."""
        with self.database.transaction() as session:
            yield session

    def close(self) -> None:
        """Release database connections."""
        if self._database is not None:
            self._database.dispose()


def configure_logging(flow: CliContext) -> None:
    """Log lines for long-running commands (agent, worker): INFO, or DEBUG with --debug.

    Every line goes through :class:`pyfi.masking.MaskingFilter`.
    Each line names the process that wrote it (``pyfi.worker[1234]``): the
    workers of one processor share one log file.
    """
    import logging

    logging.basicConfig(
        level=logging.DEBUG if flow.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    mask_log_handlers()  # log lines never show the credentials of a URL


def flow_context() -> CliContext:
    """The :class:`CliContext` of the running command."""
    obj = click.get_current_context().find_object(CliContext)
    if obj is None:  # a sub-command invoked on its own, e.g. in a test
        obj = CliContext({}, os.environ)
        click.get_current_context().obj = obj
    return obj


def pass_flow(func: F) -> F:
    """Decorator: pass the :class:`CliContext` as the first argument."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(flow_context(), *args, **kwargs)

    return update_wrapper(wrapper, func)  # type: ignore[return-value]


class FlowCliError(click.ClickException):
    """A pyfi error as click shows it: ``Error: <one line>``; exit code 1.

    The line is masked (:func:`pyfi.masking.mask_urls_in`) whatever raised it:
    a driver's or a tool's message may quote a URL with its credentials.
    """

    exit_code = EXIT_SYSTEM_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(mask_urls_in(message))


class FlowUsageError(FlowCliError):
    """A user error as click shows it; exit code 2."""

    exit_code = EXIT_USER_ERROR


class FlowGroup(click.Group):
    """A click group that reports pyfi errors as one clear line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowCliError:
            raise
        except FlowError as exc:
            _maybe_traceback(ctx)
            failure = FlowUsageError if isinstance(exc, UserError) else FlowCliError
            raise failure(exc.message) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`flow ls calls | head`): click's own handler
            # ends quietly, as a Unix tool does, instead of reporting an error.
            raise
        except Exception as exc:
            if _debugging(ctx):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise FlowCliError(
                f"unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback)"
            ) from exc


# A lazily loaded command: its module, the attribute holding it, its short help.
LazyCommand = tuple[str, str, str]


class LazyFlowGroup(FlowGroup):
    """A :class:`FlowGroup` that imports each sub-command's module only when it runs.

    Importing every sub-command (the ORM models, the network compiler,
    password hashing...) took longer than most commands take to run, and a
    starting worker paid for all of it; so commands are named in a table
    instead: ``name -> (module, attribute, short help)``. The short help is
    kept in the table so that ``flow --help`` lists every command without
    importing one.
    """

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            module, attribute, _help = self.lazy_commands[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            self.add_command(command, cmd_name)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click (8.4 and later) suggests close names from the loaded
            # commands only; suggest from all of them.
            no_such = getattr(click.exceptions, "NoSuchCommand", None)
            if no_such is None or not isinstance(exc, no_such):
                raise
            raise no_such(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:  # not imported: a stand-in carrying only its help
                command = click.Command(name, help=self.lazy_commands[name][2])
            if not command.hidden:
                rows.append((name, command))
        if rows:
            # As click's own listing: three times the default spacing.
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in rows])


def _debugging(ctx: click.Context) -> bool:
    obj = ctx.find_object(CliContext)
    return bool(obj and obj.debug)


def _maybe_traceback(ctx: click.Context) -> None:
    if _debugging(ctx):
        click.echo(mask_urls_in(traceback.format_exc()), file=sys.stderr, nl=False)
