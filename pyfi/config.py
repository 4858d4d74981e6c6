"""Settings: one frozen object, loaded once by an entry point and passed down.

Precedence, highest first: command-line options, ``PYFI_*`` environment
variables, the ini file, and the embedded defaults. The embedded defaults put a
SQLite database, a kombu filesystem-transport folder and a SQLite result store
under the user's data directory, so ``flow`` works on one machine with no
server at all. Only entry points (the CLI, the web app) read the environment;
everything else receives a :class:`Settings`.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from pyfi.errors import ConfigurationError
from pyfi.limits import DEFAULT_LIMITS, ENV_PREFIX, INI_SECTION, WireLimits, limits_from
from pyfi.masking import mask_url as mask_url  # noqa: PLC0414 - re-exported for its callers

# Environment variables, declared once.
ENV_DB = "PYFI_DB"
ENV_BROKER = "PYFI_BROKER"
ENV_BACKEND = "PYFI_BACKEND"
ENV_INI = "PYFI_INI"
ENV_DATA_DIR = "PYFI_DATA_DIR"
ENV_DEBUG = "PYFI_DEBUG"
ENV_ALLOWED_REPOS = "PYFI_ALLOWED_REPOS"
# A user's password for `flow add | update user`, which never takes it as an argument.
ENV_PASSWORD = "PYFI_PASSWORD"
ENV_ALLOWED_INDEXES = "PYFI_ALLOWED_INDEXES"
# A login token for scripts and CI; it takes the place of the one `flow login` stored.
ENV_TOKEN = "PYFI_TOKEN"
# Hours a login lasts before `flow login` is needed again.
ENV_SESSION_HOURS = "PYFI_SESSION_HOURS"
# The first administrator `flow db init` creates on PostgreSQL, for scripts.
ENV_ADMIN_NAME = "PYFI_ADMIN_NAME"
ENV_ADMIN_PASSWORD = "PYFI_ADMIN_PASSWORD"
ENV_ADMIN_EMAIL = "PYFI_ADMIN_EMAIL"
# Set by an agent for the workers it starts: they drain and exit if it dies.
ENV_AGENT_PID = "PYFI_AGENT_PID"
# Set by an agent for each worker it starts: the file the worker creates once
# it consumes, so that the agent can tell a crash loop from a worker's death.
ENV_READY_FILE = "PYFI_READY_FILE"

APP_NAME = "pyfi"
# The package index processors' requirements come from unless allowed_indexes says otherwise.
DEFAULT_INDEXES: tuple[str, ...] = ("https://pypi.org/simple",)
# How long a login lasts unless PYFI_SESSION_HOURS or [login] session_hours says otherwise;
# longer than a month is refused: a stolen token should not outlive a password change by much.
DEFAULT_SESSION_HOURS = 12.0
MAX_SESSION_HOURS = 24.0 * 30

# Where each URI lives in the ini file: (section, option).
INI_KEYS: Mapping[str, tuple[str, str]] = {
    "database_url": ("database", "uri"),
    "broker_url": ("broker", "uri"),
    "backend_url": ("backend", "uri"),
}
ENV_KEYS: Mapping[str, str] = {
    "database_url": ENV_DB,
    "broker_url": ENV_BROKER,
    "backend_url": ENV_BACKEND,
}
# The `flow` option that sets each URI.
OPTION_NAMES: Mapping[str, str] = {
    "database_url": "db",
    "broker_url": "broker",
    "backend_url": "backend",
}
LABELS: Mapping[str, str] = {
    "database_url": "database URI",
    "broker_url": "message broker URI",
    "backend_url": "result backend URI",
}

DATABASE_SCHEMES = ("postgresql", "sqlite")
BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "filesystem", "memory")
BACKEND_SCHEMES = ("redis", "rediss", "sqlite", "postgresql", "postgresql+psycopg")


def default_ini_path() -> Path:
    """The ini file used when neither ``--ini`` nor ``PYFI_INI`` names one."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "pyfi.ini"


def default_data_dir() -> Path:
    """Where the embedded database, broker folder and results live."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def embedded_defaults(data_dir: Path) -> dict[str, str]:
    """The server-free URIs rooted at ``data_dir``."""
    root = data_dir.resolve()
    return {
        "database_url": f"sqlite:///{root / 'pyfi.sqlite'}",
        "broker_url": f"filesystem://{root / 'broker'}",
        "backend_url": f"sqlite:///{root / 'results.sqlite'}",
    }


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one pyfi process."""

    database_url: str
    broker_url: str
    backend_url: str
    data_dir: Path
    ini_path: Path
    debug: bool = False
    # Glob patterns of git URLs agents may deploy (credentials stripped first).
    allowed_repos: tuple[str, ...] = ()
    # Package indexes processors' requirements are installed from (pip --index-url first).
    allowed_indexes: tuple[str, ...] = DEFAULT_INDEXES
    # What a worker accepts from the broker ([wire] in the ini, PYFI_WIRE_*).
    wire: WireLimits = DEFAULT_LIMITS
    # How long a `flow login` lasts ([login] session_hours in the ini, PYFI_SESSION_HOURS).
    session_hours: float = DEFAULT_SESSION_HOURS
    # Where each value came from ("option", "env", "ini" or "default"), for
    # `flow config show` and for error messages that point at the culprit.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_embedded(self) -> bool:
        """True when every component runs in-process on local files."""
        return (
            self.database_url.startswith("sqlite")
            and self.broker_url.startswith(("filesystem", "memory"))
            and self.backend_url.startswith("sqlite")
        )

    def masked(self) -> dict[str, str]:
        """The settings as strings, URIs masked (:func:`pyfi.masking.mask_url`)."""
        return {
            "database_url": mask_url(self.database_url),
            "broker_url": mask_url(self.broker_url),
            "backend_url": mask_url(self.backend_url),
            "data_dir": str(self.data_dir),
            "ini_path": str(self.ini_path),
            "debug": str(self.debug).lower(),
            "allowed_repos": ", ".join(self.allowed_repos),
            "allowed_indexes": ", ".join(mask_url(index) for index in self.allowed_indexes),
            "session_hours": f"{self.session_hours:g}",
        }


def load_settings(
    options: Mapping[str, object | None] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    lenient_ini: bool = False,
) -> Settings:
    """Resolve the effective settings.

    Parameters
    ----------
    options:
        Values given on the command line, keyed by field name
        (``database_url``, ``broker_url``, ``backend_url``, ``ini_path``,
        ``debug``); ``None`` means "not given".
    environ:
        The environment to read ``PYFI_*`` variables from.
    lenient_ini:
        Treat a missing or unreadable ini file as empty, for the one caller
        that is about to (re)write it: ``flow --config``.

    Returns
    -------
    Settings
        Validated settings with normalised URIs.

    Raises
    ------
    ConfigurationError
        If a URI is malformed or an explicitly named ini file is unreadable.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    environ = environ if environ is not None else {}

    data_dir = Path(environ.get(ENV_DATA_DIR) or default_data_dir()).expanduser()
    explicit_ini = options.get("ini_path") or environ.get(ENV_INI)
    ini_path = Path(str(explicit_ini)).expanduser() if explicit_ini else default_ini_path()
    try:
        ini_values = read_ini(ini_path, required=bool(explicit_ini) and not lenient_ini)
    except ConfigurationError:
        if not lenient_ini:
            raise
        ini_values = {}
    defaults = embedded_defaults(data_dir)

    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key in INI_KEYS:
        candidates = (
            ("option", options.get(key)),
            ("env", environ.get(ENV_KEYS[key])),
            ("ini", ini_values.get(key)),
            ("default", defaults[key]),
        )
        source, value = next((s, str(v)) for s, v in candidates if v)
        values[key] = value
        sources[key] = source

    allowed_text = environ.get(ENV_ALLOWED_REPOS) or _ini_option(ini_path, "agent", "allowed_repos")
    allowed = tuple(p for p in re.split(r"[\s,]+", allowed_text or "") if p)
    indexes_text = environ.get(ENV_ALLOWED_INDEXES) or _ini_option(
        ini_path, "agent", "allowed_indexes"
    )
    indexes = tuple(p for p in re.split(r"[\s,]+", indexes_text or "") if p) or DEFAULT_INDEXES
    wire_ini = _ini_section(ini_path, INI_SECTION)
    wire = limits_from(lambda name: environ.get(ENV_PREFIX + name.upper()) or wire_ini.get(name))
    session_hours = _session_hours(
        environ.get(ENV_SESSION_HOURS) or _ini_option(ini_path, "login", "session_hours")
    )
    debug_env = environ.get(ENV_DEBUG, "").lower() in ("1", "true", "yes", "on")
    debug = bool(options.get("debug")) or debug_env

    checked = {
        key: validate_uri(key, values[key], _describe_source(key, sources[key], ini_path))
        for key in INI_KEYS
    }
    return Settings(
        database_url=checked["database_url"],
        broker_url=checked["broker_url"],
        backend_url=checked["backend_url"],
        data_dir=data_dir,
        ini_path=ini_path,
        debug=debug,
        allowed_repos=allowed,
        allowed_indexes=indexes,
        wire=wire,
        session_hours=session_hours,
        sources=sources,
    )


def _session_hours(text: str | None) -> float:
    """The hours a login lasts, from PYFI_SESSION_HOURS or the ini's [login] session_hours."""
    if not text:
        return DEFAULT_SESSION_HOURS
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 < hours <= MAX_SESSION_HOURS:
        raise ConfigurationError(
            f"the session hours {text!r} ({ENV_SESSION_HOURS} or [login] session_hours) "
            f"must be a number above 0 and at most {MAX_SESSION_HOURS:g}"
        )
    return hours


def _describe_source(key: str, source: str, ini_path: Path) -> str:
    return {
        "option": f"the --{OPTION_NAMES[key]} option",
        "env": ENV_KEYS[key],
        "ini": str(ini_path),
        "default": "the embedded default",
    }[source]


def _ini_option(path: Path, section: str, option: str) -> str | None:
    """One option of the ini file, if the file can be read and has it."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None  # read_ini already reports an unreadable named ini
    return parser.get(section, option, fallback=None)


def _ini_section(path: Path, section: str) -> dict[str, str]:
    """One section of the ini file, empty if the file cannot be read or lacks it."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}  # read_ini already reports an unreadable named ini
    return dict(parser[section]) if parser.has_section(section) else {}


def read_ini(path: Path, *, required: bool) -> dict[str, str]:
    """Read the URIs from an ini file; a missing default file is not an error."""
    if not path.exists():
        if required:
            raise ConfigurationError(
                f"ini file {path} does not exist; create it with `flow --config` "
                "or point --ini/PYFI_INI at an existing file"
            )
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        # read_file, not read: read() silently skips files it cannot open.
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigurationError(
            f"cannot read ini file {path}: {first_line}; fix it or rewrite it with `flow --config`"
        ) from exc
    return {
        key: parser.get(section, option)
        for key, (section, option) in INI_KEYS.items()
        if parser.has_option(section, option) and parser.get(section, option).strip()
    }


def write_ini(path: Path, values: Mapping[str, str]) -> None:
    """Write the URIs to ``path``, readable by the owner only (it may hold passwords).

    Other sections of an existing file (``[agent]``...) are kept as they were.
    """
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        try:
            with path.open(encoding="utf-8") as handle:
                parser.read_file(handle)
        except (configparser.Error, OSError, UnicodeDecodeError):
            parser = configparser.ConfigParser(interpolation=None)  # replacing a broken file
    for key, (section, option) in INI_KEYS.items():
        if values.get(key):
            parser.setdefault(section, {})
            parser[section][option] = values[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        parser.write(handle)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written ini


def validate_uri(key: str, url: str, where: str) -> str:
    """Validate (and normalise) the URI for setting ``key``.

    ``where`` says where the value came from ("PYFI_DB", "the --db option",
    "your answer"), so the error points at what to fix.
    """
    if key == "database_url":
        return normalise_database_url(url, where)
    schemes = BROKER_SCHEMES if key == "broker_url" else BACKEND_SCHEMES
    return validate_url(url, schemes, key, where)


def normalise_database_url(url: str, where: str) -> str:
    """Validate a database URI and pin PostgreSQL to the psycopg 3 driver.

    ``postgresql://`` and ``postgres://`` would otherwise select psycopg2,
    which pyfi does not install. Parsed with the standard library: every
    command reads its settings, and most never need SQLAlchemy.
    """
    hint = "expected e.g. postgresql://user@host:5432/pyfi or sqlite:////path/to/pyfi.sqlite"
    match = _DATABASE_URL.match(url)
    if match is None:
        raise ConfigurationError(
            f"the database URI from {where} is malformed: {mask_url(url)!r}; {hint}"
        )
    scheme, rest = match.group("scheme"), match.group("rest")
    backend, _, driver = scheme.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend not in DATABASE_SCHEMES:
        raise ConfigurationError(
            f"the database URI from {where} uses {backend!r}, which pyfi does not support; {hint}"
        )
    if backend == "postgresql":
        if driver in ("", "psycopg2"):
            driver = "psycopg"
        parts = urlsplit(f"{backend}://{rest}")
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigurationError(
                f"the database URI from {where} names no host: {mask_url(url)!r}; {hint}"
            )
    return f"{backend}+{driver}://{rest}" if driver else f"{backend}://{rest}"


# ``dialect[+driver]://rest``, as SQLAlchemy's URLs are written.
_DATABASE_URL = re.compile(r"^(?P<scheme>[A-Za-z][\w.]*(?:\+[\w.]+)?)://(?P<rest>.*)$", re.DOTALL)


def validate_url(url: str, schemes: tuple[str, ...], key: str, where: str) -> str:
    """Check a broker or backend URI's scheme and shape."""
    label = LABELS[key]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    examples = ", ".join(f"{s}://" for s in schemes)
    if not scheme or "://" not in url:
        raise ConfigurationError(
            f"the {label} from {where} is malformed: {mask_url(url)!r}; expected one of {examples}"
        )
    if scheme not in schemes:
        raise ConfigurationError(
            f"the {label} from {where} uses {scheme!r}, which pyfi does not support "
            f"here; expected one of {examples}"
        )
    if scheme in ("amqp", "amqps", "pyamqp", "redis", "rediss"):
        try:
            parts.port  # noqa: B018  (raises ValueError on a non-numeric port)
        except ValueError as exc:
            raise ConfigurationError(
                f"the {label} from {where} has an invalid port: {mask_url(url)!r}"
            ) from exc
        if not parts.hostname:
            raise ConfigurationError(f"the {label} from {where} names no host: {mask_url(url)!r}")
    if scheme == "filesystem" and not parts.path:
        raise ConfigurationError(
            f"the {label} from {where} names no folder; expected filesystem:///path/to/dir"
        )
    return url


def filesystem_broker_dir(url: str) -> Path:
    """The folder a ``filesystem://`` broker URI points at."""
    return Path(urlsplit(url).path)
