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
    │   └── DatabaseNotInitialised      tables are missing: run `flow db init`
    └── DatabaseUnavailable             exit 1: the database cannot be reached

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
