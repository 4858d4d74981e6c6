"""`flow compose apply | export`: a network from a file, back to a file, and every refusal."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pyfi.db import schema
from pyfi.db.session import Database
from tests.conftest import Flow, count_rows
from tests.networks.rows import TABLES

NETWORKS = Path(__file__).resolve().parents[1] / "networks"

NETWORK = """\
queues:
- name: q1
  message_ttl: 1000
- name: q2
processors:
- name: proc1
  module: pyfi.processors.sample
  gitrepo: https://github.com/radiantone/pyfi-processors
  concurrency: 2
- name: proc2
  module: pyfi.processors.sample
  gitrepo: https://user:key@github.com/radiantone/pyfi-processors
sockets:
- name: proc1.do_something
  processor: proc1
  task: do_something
  queue: q1
  interval: 15
- name: proc2.do_this
  processor: proc2
  task: do_this
  queue: q2
  arguments: [message, {name: extra, kind: keyword_only, required: false}]
plugs:
- name: plug1
  source: proc1.do_something
  target: proc2.do_this
  queue: q1
  argument: message
"""


def write(tmp_path: Path, text: str, name: str = "net.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def nothing_written(database: Database) -> bool:
    return all(count_rows(database, model) == 0 for model in TABLES)


def second_database(tmp_path: Path) -> str:
    """Another empty, migrated database (SQLite, whatever the first one is)."""
    url = f"sqlite:///{tmp_path / 'second.sqlite'}"
    database = Database(url)
    schema.upgrade(database)
    database.dispose()
    return url


def test_compose_apply_creates_then_leaves_unchanged(flow: Flow, tmp_path: Path) -> None:
    # When a YAML network is applied
    path = write(tmp_path, NETWORK)
    first = flow("compose", "apply", path).output.splitlines()
    # Then the summary counts every object, and each created one is listed
    assert first[0] == (
        "applied net.yaml: 2 queues (2 created), 2 processors (2 created), "
        "2 sockets (2 created), 1 plug (1 created)"
    )
    assert "  created plug plug1" in first
    plug = json.loads(flow("ls", "plug", "-n", "plug1", "--json").output)["plug"]
    assert (plug["source"], plug["target"], plug["argument"]) == (
        "proc1.do_something",
        "proc2.do_this",
        "message",
    )
    # And applying it again changes nothing
    second = flow("compose", "apply", path).output.splitlines()
    assert second == [
        "applied net.yaml: 2 queues (2 unchanged), 2 processors (2 unchanged), "
        "2 sockets (2 unchanged), 1 plug (1 unchanged)"
    ]


def test_compose_apply_reports_updated_fields(flow: Flow, tmp_path: Path) -> None:
    # Given the network applied
    flow("compose", "apply", write(tmp_path, NETWORK))
    # When one field changes in the file
    changed = write(tmp_path, NETWORK.replace("concurrency: 2", "concurrency: 3"))
    output = flow("compose", "apply", changed).output.splitlines()
    # Then only that processor is updated, and the field is named
    assert "2 processors (1 updated, 1 unchanged)" in output[0]
    assert output[1:] == ["  updated processor proc1 (concurrency)"]


def test_compose_dry_run_writes_nothing(flow: Flow, database: Database, tmp_path: Path) -> None:
    # When a network is applied with --dry-run
    output = flow("compose", "apply", "--dry-run", write(tmp_path, NETWORK)).output
    # Then it says what would change, and nothing is written
    assert output.startswith("would apply net.yaml: 2 queues (2 created)")
    assert "  would create socket proc2.do_this" in output
    assert nothing_written(database)


def test_compose_export_round_trips(flow: Flow, tmp_path: Path) -> None:
    # Given a network applied and exported with its secrets
    flow("compose", "apply", write(tmp_path, NETWORK))
    exported = flow("compose", "export", "--with-secrets").output
    assert "https://user:key@github.com" in exported
    # When the export is applied to an empty database and exported again
    path = write(tmp_path, exported, "exported.yaml")
    other = second_database(tmp_path)
    applied = flow("--db", other, "compose", "apply", path).output
    assert "1 plug (1 created)" in applied
    again = flow("--db", other, "compose", "export", "--with-secrets").output
    # Then it is the same text, with the signature and the plug's argument
    assert again == exported
    assert "- message\n" in exported
    assert "argument: message\n" in exported


def test_compose_export_masks_passwords_and_apply_refuses_them(flow: Flow, tmp_path: Path) -> None:
    # Given a network exported to a file without --with-secrets
    flow("compose", "apply", write(tmp_path, NETWORK))
    target = tmp_path / "out.yaml"
    assert (
        flow("compose", "export", "-o", str(target)).output == f"exported the network to {target}\n"
    )
    text = target.read_text()
    assert "user:***@github.com" in text
    assert "user:key@" not in text
    # Then the same database accepts it back unchanged (it masks the stored URL)
    assert "2 processors (2 unchanged)" in flow("compose", "apply", str(target)).output
    # And an empty database refuses it, saying to supply the credentials
    other = second_database(tmp_path)
    error = flow.fails("--db", other, "compose", "apply", str(target))
    assert "processor 'proc2': its gitrepo" in error
    assert "supply the real credentials" in error


def test_compose_applies_a_decorated_python_file(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the reference's decorated module is applied
    monkeypatch.setenv("GIT_REPO", "https://github.com/radiantone/pyfi-processors")
    output = flow("compose", "apply", str(NETWORKS / "decorated.py")).output
    # Then its whole network is created in one go
    assert output.splitlines()[0] == (
        "applied decorated.py: 5 queues (5 created), 3 processors (3 created), "
        "3 sockets (3 created), 2 plugs (2 created)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "cannot read {path}: no such file"),
        ("queues:\n- name: q1\n  durable: [true\n", "{path}:4: invalid YAML"),
        ("queues: []\nsocket: []\n", "{path}:2: unknown section 'socket'"),
        (
            "queues:\n- name: q1\n  durabel: true\n",
            "{path}:3: queue 'q1': unknown field 'durabel'; expected one of: name, type, durable",
        ),
        ("queues:\n- name: q1\n  message_ttl: soon\n", "{path}:3: queue 'q1': message_ttl must be"),
        (
            "queues:\n- name: q1\n  durable: true\n- name: q1\n  durable: false\n",
            "{path}:4: queue 'q1' is declared twice with different durable (True and False)",
        ),
        ("queues:\n- name: q1\n  name: q2\n", "{path}:3: duplicate key 'name'"),
        ("processors:\n- module: m\n", "{path}:2: processors[0]: a processor needs a name"),
        ("queues: {q1: {}}\n", "{path}:1: queues must be a list of objects"),
        (
            "queues:\n- name: q\nsockets:\n- {name: s, processor: nope, task: f, queue: q}\n",
            "no processor named 'nope'",
        ),
        (
            "sockets:\n- {name: s, processor: p, task: f, queue: q, arguments: [{nam: x}]}\n",
            "{path}:2: socket 's': arguments[0] needs a name",
        ),
    ],
)
def test_compose_apply_refuses_bad_files_in_one_line(
    flow: Flow, database: Database, tmp_path: Path, text: str | None, expected: str
) -> None:
    # When a missing or faulty file is applied
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    error = flow.fails("compose", "apply", str(path))
    # Then exit 2 with one line saying what and where, and nothing is written
    assert expected.format(path=path) in error
    assert nothing_written(database)


def test_compose_apply_refuses_a_cycle_and_writes_nothing(
    flow: Flow, database: Database, tmp_path: Path
) -> None:
    # Given a network whose plugs feed each other's sockets
    cycle = NETWORK + (
        "- name: plug2\n  source: proc2.do_this\n  target: proc1.do_something\n  queue: q1\n"
    )
    # When it is applied, then it is refused whole
    error = flow.fails("compose", "apply", write(tmp_path, cycle))
    assert "cycle" in error
    assert nothing_written(database)


def test_compose_apply_refuses_other_suffixes(flow: Flow, tmp_path: Path) -> None:
    error = flow.fails("compose", "apply", write(tmp_path, "x", "net.txt"))
    assert "expected a .yaml, .yml or .py file" in error
