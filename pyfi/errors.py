"""The whole exception tree of pyfi.

Every error pyfi raises on purpose derives from :class:`FlowError`. The
command line maps :class:`UserError` (the caller asked for something wrong) to
exit code 2 and every other :class:`FlowError` (something around us is broken)
to exit code 1; nothing below ``pyfi.cli`` knows about exit codes.

::

    FlowError
    ├── UserError                       exit 2: fix the input and retry
    │   ├── ConfigurationError          a malformed URI, an unreadable ini file
    │   ├── InvalidValue                a value outside what a field accepts
    │   ├── ObjectNotFound              a name that does not exist
    │   │   └── ProcessorNotFound
    │   ├── DuplicateObject             a name that is already taken
    │   ├── ObjectInUse                 delete refused: other objects refer to it
    │   ├── DatabaseNotInitialised      tables are missing: run `flow db init`
    │   ├── AdaptorNotFound             `flow listen -a`: no such module.function
    │   ├── NotLoggedIn                 no valid login: run `flow login`
    │   ├── LoginFailed                 wrong name or password, or too many failures
    │   ├── Forbidden                   the acting user lacks the right an action needs
    │   ├── RepoNotAllowed              a processor's git repository is not in allowed_repos
    │   └── CodeNotAllowed              a module, task or requirement pyfi will not run
    ├── DatabaseUnavailable             exit 1: the database cannot be reached
    ├── BrokerUnavailable               the message broker cannot be reached
    ├── MessageDecodeError              a message that is not a pyfi envelope
    ├── CallFailed                      the remote function raised (type, message, traceback)
    │   └── CallTimeout                 no result within the time asked for
    ├── TimeLimitExceeded               a call ran past its processor's timelimit (process killed)
    ├── CallProcessDied                 the child process running a time-limited call died
    ├── Retry                           raised by user code to ask for another attempt
    ├── BackendError                    the result backend failed
    │   └── BackendUnavailable          the result backend cannot be reached
    ├── EventsUnavailable               the live-event transport cannot be reached
    ├── EventDecodeError                a live event that is not JSON of the expected shape
    ├── AdaptorFailed                   a `flow listen` adaptor raised on an event
    └── DeployError                     an agent could not deploy a processor's code
        ├── GitError                    clone, fetch or checkout failed (git's own reason)
        └── VenvError                   the virtualenv or its pip install failed
    WorkerShutdown (BaseException)      stops a worker; user code cannot swallow it

Each class's docstring is its default message, so ``raise ObjectNotFound()``
still says something useful.
"""

from __future__ import annotations


class FlowError(Exception):
    """pyfi failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The one-line explanation shown to users."""
        return str(self.args[0]) if self.args else ""


class UserError(FlowError):
    """The request cannot be carried out as given."""


class ConfigurationError(UserError):
    """The configuration is invalid."""


class InvalidValue(UserError):
    """A value is not one the field accepts."""


class ObjectNotFound(UserError):
    """No object of that kind has that name."""

    def __init__(self, kind: str, name: str, hint: str | None = None, *, by: str = "named") -> None:
        self.kind = kind
        self.name = name
        message = f"no {kind} {by} {name!r}"
        super().__init__(f"{message}; {hint}" if hint else message)


class ProcessorNotFound(ObjectNotFound):
    """No processor has that name."""

    def __init__(self, name: str, hint: str | None = None) -> None:
        super().__init__("processor", name, hint)


class DuplicateObject(UserError):
    """An object of that kind already has that name."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"a {kind} named {name!r} already exists; choose another name "
            f"or change it with `flow update {kind} -n {name} ...`"
        )


class ObjectInUse(UserError):
    """The object cannot be deleted while other objects refer to it."""


class DatabaseNotInitialised(UserError):
    """The database has no pyfi tables; run `flow db init` first."""


class DatabaseUnavailable(FlowError):
    """The database cannot be reached."""


class BrokerUnavailable(FlowError):
    """The message broker cannot be reached."""


class MessageDecodeError(FlowError):
    """The message is not a pyfi envelope."""


class CallFailed(FlowError):
    """The remote function raised; its failure travels as data, never as a pickle."""

    def __init__(
        self,
        error_type: str = "Exception",
        message: str = "",
        traceback: str | None = None,
        call_id: str | None = None,
    ) -> None:
        self.error_type = error_type
        self.remote_message = message
        self.traceback = traceback
        self.call_id = call_id
        super().__init__(f"remote {error_type}: {message}" if message else f"remote {error_type}")


class CallTimeout(CallFailed):
    """No result arrived within the time asked for."""

    def __init__(self, call_id: str, timeout_s: float) -> None:
        super().__init__("CallTimeout", f"no result after {timeout_s:g}s", call_id=call_id)
        self.args = (
            f"no result for call {call_id} after {timeout_s:g}s; it may still run "
            "(is a worker consuming its socket?)",
        )


class TimeLimitExceeded(FlowError):
    """The call ran past its processor's time limit; the process running it was killed."""


class CallProcessDied(FlowError):
    """The child process running the call died before it answered (a crash, a signal, an exit)."""


class Retry(FlowError):
    """Raised by a socket function to ask for another attempt after ``delay`` seconds."""

    def __init__(self, message: str = "", delay: float | None = None) -> None:
        super().__init__(message or "retry requested")
        self.delay = delay


class WorkerShutdown(BaseException):
    """Stops a worker; a BaseException so that `except Exception` in user code cannot catch it."""


class BackendError(FlowError):
    """The result backend failed."""


class BackendUnavailable(BackendError):
    """The result backend cannot be reached."""


class AdaptorNotFound(UserError):
    """The adaptor cannot be loaded; expected an importable module.function."""


class EventsUnavailable(FlowError):
    """The live-event transport (Redis or the message broker) cannot be reached."""


class EventDecodeError(FlowError):
    """A live event is not a JSON object of the expected shape."""


class AdaptorFailed(FlowError):
    """The adaptor raised an exception while handling an event."""


class NotLoggedIn(UserError):
    """You are not logged in, or your login expired; run `flow login`."""


class LoginFailed(UserError):
    """The login was refused: wrong name or password, or too many failures."""


class Forbidden(UserError):
    """You may not do that; ask an administrator for the right it needs."""


class RepoNotAllowed(UserError):
    """The repository is not allowed on this agent; add a matching glob to allowed_repos."""


class CodeNotAllowed(UserError):
    """The processor names code pyfi does not run (see docs/security.md)."""


class DeployError(FlowError):
    """The processor's code could not be deployed."""


class GitError(DeployError):
    """Git could not clone, fetch or check out the processor's repository."""


class VenvError(DeployError):
    """The processor's virtualenv could not be built."""


class InvalidNetwork(UserError):
    """The network cannot run as declared; run `flow validate` to see why."""


class NetworkFileError(UserError):
    """The network file cannot be read: it is missing, malformed, or raises while it loads."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an error's message, for a one-line report.

    A SQLAlchemy error wraps the driver's (``orig``) and appends the SQL and
    its parameters: the driver's own message is the one that says what went
    wrong, and the parameters may hold what a log must not.
    """
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__
