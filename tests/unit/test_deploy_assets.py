"""The deployment assets agree with each other and with pyfi's settings.

Docker and systemd cannot run here, so docker-compose.yml and agents/* are
parsed and checked statically: the services and their wiring, the URIs every
pyfi container gets (validated by pyfi.config itself), the credentials on both
ends of each URI, the image, the systemd unit and the example settings files.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from pyfi import config

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "agents"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = AGENTS / "Dockerfile"
UNIT = AGENTS / "pyfi-agent.service"
ENV_EXAMPLE = AGENTS / "agent.env.example"
INI_EXAMPLE = AGENTS / "pyfi.ini.example"

# The ini key of the repository allowlist. pyfi.config reads it in load_settings
# but declares no constant for it (INI_KEYS lists the URIs only), so it is
# named here, and test_*_allowlist_reaches_the_settings prove pyfi reads it.
ALLOWED_REPOS_INI = ("agent", "allowed_repos")

URI_VARIABLES = {
    "database_url": "PYFI_DB",
    "broker_url": "PYFI_BROKER",
    "backend_url": "PYFI_BACKEND",
}
PYFI_SERVICES = ("db-init", "agent")
SERVERS = {"postgres": "postgres:16", "rabbitmq": "rabbitmq:3-management", "redis": "redis:7"}
PUBLISHED_PORTS = {
    "postgres": {5432},
    "rabbitmq": {5672, 15672},
    "redis": {6379},
    "agent": {8090},
}
PLACEHOLDER_PASSWORD = "CHANGE_ME"
MIN_DRAIN_SECONDS = 60


# -- what pyfi declares ----------------------------------------------------------------
def declared_env() -> set[str]:
    """The PYFI_* variables pyfi reads: the values of pyfi.config's ENV_* constants."""
    return {
        value
        for name, value in vars(config).items()
        if name.startswith("ENV_") and isinstance(value, str)
    }


def declared_ini() -> set[tuple[str, str]]:
    """The (section, key) pairs pyfi reads from its ini file."""
    return {*config.INI_KEYS.values(), ALLOWED_REPOS_INI}


def load_env_settings(environ: Mapping[str, str], tmp_path: Path) -> config.Settings:
    """Settings from ``environ`` alone: an empty ini file and a scratch data directory."""
    empty_ini = tmp_path / "empty.ini"
    empty_ini.write_text("")
    return config.load_settings(
        {}, {**environ, config.ENV_INI: str(empty_ini), config.ENV_DATA_DIR: str(tmp_path)}
    )


# -- parsers ----------------------------------------------------------------------------
def read_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; blank lines and whole-line # comments are skipped."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def read_ini_example() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    with INI_EXAMPLE.open(encoding="utf-8") as handle:
        parser.read_file(handle)
    return parser


def read_unit() -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line in {UNIT.name}: {line!r}"
        assert current is not None, f"{key} comes before any [section]"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_paths(service: Mapping[str, list[str]], key: str) -> list[PurePosixPath]:
    """The paths of a path-list setting; a leading "-" (ignore if missing) is dropped."""
    return [PurePosixPath(p.lstrip("-+")) for value in service.get(key, []) for p in value.split()]


def read_dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        instruction, _, arguments = (pending + line).partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def only(instructions: list[tuple[str, str]], name: str) -> str:
    found = [arguments for instruction, arguments in instructions if instruction == name]
    assert len(found) == 1, f"expected one {name} in the final stage, found {found}"
    return found[0]


def copies(instructions: list[tuple[str, str]]) -> dict[str, PurePosixPath]:
    """{source in the build context: destination} of the COPY instructions."""
    found = {}
    for name, arguments in instructions:
        if name == "COPY" and not arguments.startswith("--from"):
            *sources, destination = arguments.split()
            for source in sources:
                target = PurePosixPath(destination)
                found[str(PurePosixPath(source))] = (
                    target / PurePosixPath(source).name if destination.endswith("/") else target
                )
    return found


def parse_port(entry: object) -> tuple[str, int, int]:
    """A short-syntax port "HOST_IP:HOST_PORT:CONTAINER_PORT" as its three parts."""
    assert isinstance(entry, str), f"ports are quoted HOST_IP:HOST:CONTAINER strings: {entry!r}"
    host_ip, host_port, container_port = entry.rsplit(":", 2)
    return host_ip, int(host_port), int(container_port)


def named_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """{volume name: path in the container} for the service's named-volume mounts."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        if not source.startswith(("/", ".", "~")):
            mounts[source] = target
    return mounts


def option_value(argv: list[str], option: str) -> str:
    assert option in argv, f"{option} missing from {argv}"
    return argv[argv.index(option) + 1]


def example_uris() -> list[tuple[str, str]]:
    env = read_env_file(ENV_EXAMPLE)
    ini = read_ini_example()
    return [
        *((f"{ENV_EXAMPLE.name} {URI_VARIABLES[k]}", env[URI_VARIABLES[k]]) for k in URI_VARIABLES),
        *(
            (f"{INI_EXAMPLE.name} [{section}]", ini.get(section, option))
            for section, option in config.INI_KEYS.values()
        ),
    ]


# -- docker-compose.yml --------------------------------------------------------------------
def test_compose_declares_the_mesh_services() -> None:
    # Given the compose file
    services = read_compose()["services"]
    # When its services are listed
    names = set(services)
    # Then the three servers run their pinned images, beside the two pyfi services
    assert set(SERVERS) | set(PYFI_SERVICES) <= names
    for name, image in SERVERS.items():
        assert services[name]["image"] == image, name


def test_compose_ports_are_published_on_loopback_only() -> None:
    # Given every port mapping in the compose file (its passwords are public)
    services = read_compose()["services"]
    published = {
        name: [parse_port(entry) for entry in service.get("ports", [])]
        for name, service in services.items()
    }
    # When they are compared with the ports each service serves
    container_ports = {name: {p[2] for p in ports} for name, ports in published.items() if ports}
    # Then each service publishes exactly its own ports, under the same number, on 127.0.0.1
    assert container_ports == PUBLISHED_PORTS
    for name, ports in published.items():
        for host_ip, host_port, container_port in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes {container_port} beyond loopback"
            assert host_port == container_port, name


def test_compose_volumes_are_declared_and_used() -> None:
    # Given the compose file's top-level volumes and every service's mounts
    compose = read_compose()
    declared = set(compose["volumes"])
    mounts = {name: named_mounts(service) for name, service in compose["services"].items()}
    # When the named volumes in use are collected
    used = {volume for service_mounts in mounts.values() for volume in service_mounts}
    # Then each one is declared, each declared one is used, and the data lands where it belongs
    assert used == declared
    assert mounts["postgres"]["postgres-data"] == "/var/lib/postgresql/data"
    assert mounts["rabbitmq"]["rabbitmq-data"] == "/var/lib/rabbitmq"
    # And the agent's workdir persists in a volume, as a folder inside it (not the mount
    # point itself, which `flow agent start --clean` could not remove)
    workdir = PurePosixPath(option_value(compose["services"]["agent"]["command"], "--workdir"))
    assert any(PurePosixPath(target) in workdir.parents for target in mounts["agent"].values())


def test_compose_pyfi_services_share_one_image_and_the_env_anchor() -> None:
    # Given the shared pyfi environment (x-pyfi-env) and the two pyfi services
    compose = read_compose()
    anchor = compose["x-pyfi-env"]
    services = compose["services"]
    # When their environment and build are compared
    # Then both get exactly the anchor, and both build agents/Dockerfile from the repository root
    for name in PYFI_SERVICES:
        service = services[name]
        assert service["environment"] == anchor, name
        assert service["image"] == services["agent"]["image"], name
        build = service["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
    assert set(URI_VARIABLES.values()) <= set(anchor)


def test_compose_env_uris_pass_settings_validation(tmp_path: Path) -> None:
    # Given the environment every pyfi container gets
    anchor = read_compose()["x-pyfi-env"]
    # When pyfi loads its settings from that environment alone
    settings = load_env_settings(anchor, tmp_path)
    # Then every URI validates, comes from the environment, and names a server
    assert dict(settings.sources) == dict.fromkeys(URI_VARIABLES, "env")
    assert not settings.is_embedded
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.broker_url.startswith("amqp://")
    assert settings.backend_url.startswith("redis://")


def test_compose_db_uri_matches_the_postgres_service() -> None:
    # Given the database URI of the pyfi services and the postgres service
    compose = read_compose()
    uri = urlsplit(compose["x-pyfi-env"]["PYFI_DB"])
    env = compose["services"]["postgres"]["environment"]
    # When both ends are compared
    # Then pyfi logs in as the user postgres creates, to its database, by service name
    assert unquote(uri.username or "") == env["POSTGRES_USER"]
    assert unquote(uri.password or "") == env["POSTGRES_PASSWORD"]
    assert uri.path.lstrip("/") == env["POSTGRES_DB"]
    assert uri.hostname == "postgres"
    assert uri.port == 5432


def test_compose_broker_uri_matches_the_rabbitmq_service() -> None:
    # Given the broker URI of the pyfi services and the rabbitmq service
    compose = read_compose()
    uri = urlsplit(compose["x-pyfi-env"]["PYFI_BROKER"])
    env = compose["services"]["rabbitmq"]["environment"]
    # When both ends are compared
    # Then pyfi logs in as RabbitMQ's default user, on the default vhost "/", by service name
    assert unquote(uri.username or "") == env["RABBITMQ_DEFAULT_USER"]
    assert unquote(uri.password or "") == env["RABBITMQ_DEFAULT_PASS"]
    assert uri.hostname == "rabbitmq"
    assert uri.port == 5672
    assert uri.path == "//"


def test_compose_backend_uri_points_at_the_redis_service() -> None:
    # Given the result backend URI of the pyfi services
    compose = read_compose()
    uri = urlsplit(compose["x-pyfi-env"]["PYFI_BACKEND"])
    # When its host is looked up among the services
    # Then it is the redis service, on its port
    assert uri.hostname == "redis"
    assert uri.hostname in compose["services"]
    assert uri.port == 6379


def test_compose_pyfi_services_wait_for_healthy_servers() -> None:
    # Given the pyfi services' dependencies
    services = read_compose()["services"]
    # When their conditions are read
    conditions = {
        name: {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        for name in PYFI_SERVICES
    }
    # Then db-init waits for postgres, and the agent for all three servers and for db-init
    assert conditions["db-init"] == {"postgres": "service_healthy"}
    assert conditions["agent"] == {
        **dict.fromkeys(SERVERS, "service_healthy"),
        "db-init": "service_completed_successfully",
    }
    # And each service waited on as healthy has a healthcheck (compose refuses to start otherwise)
    for dependencies in conditions.values():
        for dep, condition in dependencies.items():
            if condition == "service_healthy":
                assert services[dep]["healthcheck"]["test"], dep


def test_compose_db_init_runs_once() -> None:
    # Given the db-init service
    service = read_compose()["services"]["db-init"]
    # When its command and restart policy are read
    # Then it runs `flow db init` once, never restarted (a "no" left unquoted would be False)
    assert service["command"] == ["db", "init"]
    assert service["restart"] == "no"


def test_compose_agent_starts_reachable_and_drains_on_stop() -> None:
    # Given the agent service
    service = read_compose()["services"]["agent"]
    argv = service["command"]
    # When its command and stop grace period are read
    grace = re.fullmatch(r"(\d+)s", str(service["stop_grace_period"]))
    # Then it starts a named agent listening on every interface, with time to drain
    assert argv[:2] == ["agent", "start"]
    assert option_value(argv, "--host") == "0.0.0.0"
    assert option_value(argv, "--name") == "agent1"
    assert grace is not None
    assert int(grace.group(1)) >= MIN_DRAIN_SECONDS


def test_compose_allowlist_reaches_the_settings(tmp_path: Path) -> None:
    # Given the environment every pyfi container gets
    anchor = read_compose()["x-pyfi-env"]
    # When pyfi loads its settings from it
    settings = load_env_settings(anchor, tmp_path)
    # Then the agent gets a non-empty allowlist (an empty one deploys nothing)
    assert settings.allowed_repos
    assert settings.allowed_repos == tuple(anchor[config.ENV_ALLOWED_REPOS].split(","))


# -- PYFI_* variables across the assets ------------------------------------------------------
@pytest.mark.parametrize("path", [COMPOSE, DOCKERFILE, UNIT, ENV_EXAMPLE], ids=lambda p: p.name)
def test_deploy_assets_name_only_variables_pyfi_reads(path: Path) -> None:
    # Given every PYFI_* name written in the asset
    used = set(re.findall(r"\bPYFI_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    # When they are compared with the variables pyfi.config declares
    unknown = used - declared_env()
    # Then none is unknown (pyfi would silently ignore a misspelt one)
    assert used
    assert not unknown, f"{path.name} sets variables pyfi never reads: {sorted(unknown)}"


# -- agents/Dockerfile -----------------------------------------------------------------------
def test_dockerfile_entrypoint_is_flow_and_runs_unprivileged() -> None:
    # Given the final stage of the Dockerfile
    stage = final_stage(read_dockerfile())
    # When its base, entry point, default command and user are read
    user = only(stage, "USER").split(":")[0]
    # Then it is python:3.11-slim running `flow agent start` on every interface, not as root
    assert only(stage, "FROM").split()[0] == "python:3.11-slim"
    assert json.loads(only(stage, "ENTRYPOINT")) == ["flow"]
    cmd = json.loads(only(stage, "CMD"))
    assert cmd[:2] == ["agent", "start"]
    assert option_value(cmd, "--host") == "0.0.0.0"
    assert user not in ("root", "0")


def test_dockerfile_installs_git() -> None:
    # Given the final stage's RUN instructions
    runs = [args for name, args in final_stage(read_dockerfile()) if name == "RUN"]
    # When the apt-get install lines are split into words
    installed = {word for run in runs if "apt-get install" in run for word in shlex.split(run)}
    # Then git is among the packages (the agent clones processor repositories)
    assert "git" in installed


def test_dockerfile_healthcheck_asks_the_agent_port() -> None:
    # Given the final stage's HEALTHCHECK, EXPOSE and the compose agent's published port
    stage = final_stage(read_dockerfile())
    healthcheck = only(stage, "HEALTHCHECK")
    _, _, agent_port = parse_port(read_compose()["services"]["agent"]["ports"][0])
    # When the health command is read
    argv = json.loads(healthcheck.split(" CMD ", 1)[1])
    # Then it uses Python (the slim image has no curl) on the port exposed and published
    assert argv[0] == "python"
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)/health", argv[-1])}
    assert ports == {agent_port} == {int(only(stage, "EXPOSE"))}


def test_dockerfile_copies_what_pip_install_needs() -> None:
    # Given what pyproject.toml builds from: itself, the readme and the package folders
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    roots = {
        pkg.split(".")[0] for pkg in setuptools["packages"] if not pkg.startswith(tuple(mapped))
    }
    needed = {"pyproject.toml", project["project"]["readme"], *roots, *mapped.values()}
    # When the COPY instructions from the build context are collected
    copied = copies(read_dockerfile())
    # Then each lands, under its own name, in the one folder pip installs
    assert needed <= set(copied), sorted(needed - set(copied))
    folders = {copied[source].parent for source in needed}
    assert len(folders) == 1, folders
    assert all(copied[source].name == PurePosixPath(source).name for source in needed)


def test_dockerfile_keeps_the_pyfi_source_writable_by_the_agent() -> None:
    # Given the folder the Dockerfile copies pyproject.toml to, and the final stage
    source = str(copies(read_dockerfile())["pyproject.toml"].parent)
    stage = final_stage(read_dockerfile())
    user = only(stage, "USER").split(":")[0]
    # When the RUN that installs pyfi is found
    (install,) = [args for name, args in stage if name == "RUN" and "pip install" in args]
    words = shlex.split(install)
    # Then it installs that folder (not editable), and leaves it to the runtime user: the
    # agent pip-installs the pyfi it runs from there into each processor's virtualenv
    # (pyfi.agent.venv.pyfi_requirement), and pip builds in the folder
    assert source in words
    assert "-e" not in words
    assert "--editable" not in words
    assert re.search(rf"chown -R {user}(:\w+)? {re.escape(source)}(\s|$)", install)


# -- agents/pyfi-agent.service -------------------------------------------------------------
def test_systemd_unit_runs_flow_agent_start() -> None:
    # Given the unit's [Service] section
    service = read_unit()["Service"]
    # When its ExecStart is split into words
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    # Then it runs the venv's `flow agent start` as pyfi, with the settings from agent.env
    assert argv[0] == "/opt/pyfi/.venv/bin/flow"
    assert argv[1:3] == ["agent", "start"]
    assert option_value(argv, "--name") == "%H"
    assert service["User"] == ["pyfi"]
    assert service["EnvironmentFile"] == ["/etc/pyfi/agent.env"]


def test_systemd_unit_can_write_its_workdir_and_the_pyfi_source() -> None:
    # Given the unit's sandbox, the agent's --workdir, and the image's pyfi source folder
    service = read_unit()["Service"]
    workdir = PurePosixPath(option_value(shlex.split(service["ExecStart"][0]), "--workdir"))
    source = copies(read_dockerfile())["pyproject.toml"].parent
    # When the writable paths are collected (ReadWritePaths=, and StateDirectory= under /var/lib)
    writable = unit_paths(service, "ReadWritePaths")
    writable += [PurePosixPath("/var/lib") / p for p in unit_paths(service, "StateDirectory")]
    # Then the file system is read-only but for paths holding the workdir (as a folder, not
    # a mount point, so that --clean can remove it) and the source the agent installs from
    assert service["ProtectSystem"] == ["strict"]
    assert any(path in workdir.parents for path in writable)
    assert workdir not in writable
    assert source in writable


def test_systemd_unit_stops_with_sigterm_and_time_to_drain() -> None:
    # Given the unit's [Service] section
    service = read_unit()["Service"]
    # When its stop and restart settings are read
    timeout = re.fullmatch(r"(\d+)s?", service["TimeoutStopSec"][-1])
    # Then SIGTERM (to the agent, which relays it) starts a drain with time to finish
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]
    assert timeout is not None
    assert int(timeout.group(1)) >= MIN_DRAIN_SECONDS
    assert service["Restart"] == ["on-failure"]


def test_systemd_unit_is_hardened() -> None:
    # Given the unit's [Service] section
    service = read_unit()["Service"]
    # When its sandbox options are read
    settings = {key: values[-1] for key, values in service.items()}
    # Then it cannot gain privileges, has no capabilities, a private /tmp, and sees no /home
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome"):
        assert settings.get(key) == "yes", key
    assert settings.get("CapabilityBoundingSet") == ""


# -- agents/agent.env.example and agents/pyfi.ini.example -----------------------------------
def test_env_example_sets_only_variables_pyfi_reads() -> None:
    # Given the example env file
    lines = [
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    values = read_env_file(ENV_EXAMPLE)
    # When its variables are compared with those pyfi declares
    # Then it sets the three URIs and the allowlist, nothing unknown,
    assert {*URI_VARIABLES.values(), config.ENV_ALLOWED_REPOS} <= set(values)
    assert set(values) <= declared_env()
    # and each line means the same to systemd and to `docker --env-file` (no quotes, no spaces)
    for line in lines:
        assert re.fullmatch(r"PYFI_[A-Z0-9_]+=[^\s\"']+", line), line


def test_env_example_uris_pass_settings_validation(tmp_path: Path) -> None:
    # Given the example env file
    values = read_env_file(ENV_EXAMPLE)
    # When pyfi loads its settings from it
    settings = load_env_settings(values, tmp_path)
    # Then every URI validates and comes from the environment
    assert dict(settings.sources) == dict.fromkeys(URI_VARIABLES, "env")
    assert not settings.is_embedded


def test_ini_example_names_only_sections_and_keys_pyfi_reads() -> None:
    # Given the example ini file
    parser = read_ini_example()
    # When its (section, key) pairs are collected
    pairs = {(section, key) for section in parser.sections() for key in parser[section]}
    # Then they are exactly the ones pyfi reads: the three URIs and [agent] allowed_repos
    assert pairs == declared_ini()


def test_ini_example_uris_pass_settings_validation(tmp_path: Path) -> None:
    # Given the example ini file named by PYFI_INI, and no URI in the environment
    environ = {config.ENV_INI: str(INI_EXAMPLE), config.ENV_DATA_DIR: str(tmp_path)}
    # When pyfi loads its settings
    settings = config.load_settings({}, environ)
    # Then every URI validates and comes from the ini file
    assert dict(settings.sources) == dict.fromkeys(URI_VARIABLES, "ini")
    assert not settings.is_embedded


def test_examples_allowlist_reaches_the_settings(tmp_path: Path) -> None:
    # Given the example env file, and the example ini file with no environment
    from_env = load_env_settings(read_env_file(ENV_EXAMPLE), tmp_path)
    environ = {config.ENV_INI: str(INI_EXAMPLE), config.ENV_DATA_DIR: str(tmp_path)}
    from_ini = config.load_settings({}, environ)
    # When the allowlists pyfi loads from each are compared
    patterns = from_env.allowed_repos
    # Then both give the same patterns, each fixing scheme and host (no pattern allows any
    # repository anywhere)
    assert patterns
    assert from_ini.allowed_repos == patterns
    for pattern in patterns:
        assert re.match(r"(https|ssh)://[^*/]+/|git@[^*:]+:", pattern), pattern


@pytest.mark.parametrize(("where", "uri"), example_uris())
def test_examples_use_placeholder_hosts_and_passwords(where: str, uri: str) -> None:
    # Given a URI of an example settings file
    parts = urlsplit(uri)
    # When its host and password are read
    # Then both are obvious placeholders (RFC 2606 .example hosts, CHANGE_ME)
    assert (parts.hostname or "").endswith(".example"), where
    assert parts.password == PLACEHOLDER_PASSWORD, where
