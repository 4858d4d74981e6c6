"""`flow add | update | delete` on every kind, and every bad input they must refuse."""

from __future__ import annotations

import json
from shlex import split

import pytest
from sqlalchemy import select

from pyfi.db import models
from pyfi.db.session import Database
from pyfi.passwords import verify_password
from tests.conftest import Flow, count_rows

# A password typed at the prompt, and again to confirm it.
TYPED = "password123\npassword123\n"


def _show(flow: Flow, kind: str, name: str) -> dict:
    return json.loads(flow("ls", kind, "-n", name, "--json").output)[kind]


def test_add_queue_keeps_unset_arguments_null(flow: Flow) -> None:
    # Given a queue added with only a name
    flow("add", "queue", "-n", "q1")
    # Then it is a durable direct queue with no TTL, expiry or length limit
    queue = _show(flow, "queue", "q1")
    assert queue["type"] == "direct"
    assert queue["durable"] is True
    assert [queue[k] for k in ("message_ttl", "expires", "max_length")] == [None, None, None]


def test_add_processor_records_every_option(flow: Flow) -> None:
    # When a processor is added with the reference's options
    flow(
        *split(
            "add processor -n proc1 -g https://example.org/repo.git -m pkg.mod -h host1 -c 3 "
            "-br dev --commit abc123 -r 2 --requirements requests>=2 -rs paused"
        )
    )
    # Then each one is stored
    proc = _show(flow, "processor", "proc1")
    stored = [proc[k] for k in ("hostname", "concurrency", "branch", "commit", "retries")]
    assert stored == ["host1", 3, "dev", "abc123", 2]
    assert (proc["requirements"], proc["requested_status"]) == ("requests>=2", "paused")
    assert proc["status"] == "ready"


def test_add_processor_reads_requirements_file(flow: Flow, tmp_path) -> None:
    # Given a requirements file
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\nrequests>=2\n")
    # When it is passed as @FILE
    flow("add", "processor", "-n", "p", "-g", "g", "-m", "m", "-rq", f"@{requirements}")
    # Then its contents are stored
    assert _show(flow, "processor", "p")["requirements"] == "numpy\nrequests>=2\n"


def test_update_processor_changes_only_given_fields(first_flow: Flow) -> None:
    # When the commit is updated
    first_flow("update", "processor", "-n", "proc1", "--commit", "deadbeef")
    # Then the commit changed and the rest did not
    proc = _show(first_flow, "processor", "proc1")
    assert proc["commit"] == "deadbeef"
    assert proc["concurrency"] == 5
    assert proc["hostname"] == "localhost"


def test_update_renames_and_keeps_references(first_flow: Flow) -> None:
    # When the queue is renamed
    first_flow("update", "queue", "-n", "pyfi.queue1", "--new-name", "pyfi.queue9")
    # Then its sockets follow it
    socket = _show(first_flow, "socket", "pyfi.processors.sample.do_this")
    assert socket["queue"] == "pyfi.queue9"


def test_update_socket_moves_task_to_new_processor(first_flow: Flow) -> None:
    # Given a second processor
    first_flow("add", "processor", "-n", "proc2", "-g", "g", "-m", "pyfi.processors.sample")
    # When a socket moves to it
    first_flow("update", "socket", "-n", "pyfi.processors.sample.do_this", "-pn", "proc2")
    # Then the socket's task is the same function on the new processor
    socket = _show(first_flow, "socket", "pyfi.processors.sample.do_this")
    assert (socket["processor"], socket["task"]) == ("proc2", "do_this")


def test_add_plug_binds_target_argument(first_flow: Flow) -> None:
    # When a plug names an argument of its target (closing a cycle on purpose)
    first_flow(
        *split(
            "add plug -n plug2 -q pyfi.queue1 -s pyfi.processors.sample.do_this "
            "-t pyfi.processors.sample.do_something -a message --type error --loop"
        )
    )
    # Then the argument is recorded on the target's task and the type is normalised
    plug = _show(first_flow, "plug", "plug2")
    assert (plug["argument"], plug["type"]) == ("message", "ERROR")


def test_delete_processor_cascades_to_sockets_and_plugs(first_flow: Flow) -> None:
    # When the processor is deleted
    result = first_flow("delete", "processor", "-n", "proc1")
    # Then the output says what went with it, and nothing is left
    assert "2 sockets" in result.output
    assert "1 plug" in result.output
    assert json.loads(first_flow("ls", "sockets", "--json").output) == []
    assert json.loads(first_flow("ls", "plugs", "--json").output) == []


def test_delete_used_queue_is_refused(first_flow: Flow) -> None:
    # When a queue still used by sockets is deleted
    error = first_flow.fails("delete", "queue", "-n", "pyfi.queue1")
    # Then the user is told who uses it, and it stays
    assert "used by socket pyfi.processors.sample.do_something" in error
    assert _show(first_flow, "queue", "pyfi.queue1")["name"] == "pyfi.queue1"


def test_add_user_hashes_password(flow: Flow, database: Database) -> None:
    # When a user is added with a password typed at the prompt
    typed = "correct horse\ncorrect horse\n"
    flow(*split("add user -n joe -e joe@example.org"), input=typed)
    # Then only a verifiable hash is stored
    with database.transaction() as session:
        user = session.scalars(select(models.User)).one()
        assert "correct horse" not in user.password_hash
        assert verify_password(user.password_hash, "correct horse")


def test_roles_and_privileges_are_granted_and_revoked(flow: Flow) -> None:
    # Given a user and a role
    flow("add", "user", "-n", "joe", "-e", "joe@example.org", input=TYPED)
    flow("add", "role", "-n", "developer")
    # When rights go to both and the role goes to the user
    granted = flow(*split("add privilege -u joe -n add_processor")).output
    assert "Granted ADD_PROCESSOR to user joe" in granted
    flow("add", "privilege", "-r", "developer", "-n", "ADD_SOCKET")
    flow("update", "user", "-n", "joe", "--add-role", "developer")
    # Then the user shows both, with where each comes from
    shown = json.loads(flow("ls", "user", "-n", "joe", "--json").output)
    assert shown["user"]["roles"] == ["developer"]
    held = {(p["right"], p["via"]) for p in shown["privileges"]}
    assert held == {("ADD_PROCESSOR", "direct"), ("ADD_SOCKET", "role developer")}
    # And a revoked right is gone
    flow("delete", "privilege", "-u", "joe", "-n", "ADD_PROCESSOR")
    assert json.loads(flow("ls", "user", "-n", "joe", "--json").output)["user"]["privileges"] == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("add socket -n s -q pyfi.queue1 -pn nope -t f", "no processor named 'nope'"),
        ("add socket -n s -q nope -pn proc1 -t f", "no queue named 'nope'"),
        (
            "add plug -n p -q pyfi.queue1 -s nope -t pyfi.processors.sample.do_this",
            "no source socket named 'nope'",
        ),
        ("add queue -n pyfi.queue1", "a queue named 'pyfi.queue1' already exists"),
        ("add processor -n p -g g -m m -c 0", "concurrency must be at least 1"),
        ("add queue -n 'bad name'", "invalid queue name 'bad name'"),
        (
            "add socket -n s -q pyfi.queue1 -pn proc1 -t f --cron 'every day'",
            "invalid cron expression",
        ),
        ("update processor -n nope -c 2", "no processor named 'nope'"),
        ("update processor -n proc1", "nothing to update"),
        ("delete plug -n nope", "no plug named 'nope'"),
        ("add privilege -n ADD_PROCESSOR", "give --user NAME, --role NAME"),
        ("add privilege -u nobody -n ADD_PROCESSOR", "no user named 'nobody'"),
        ("add user -n u -e u@x.org -p short", "never taken on the command line"),
        ("add socket -n s -q pyfi.queue1 -pn proc1 -t __import__", "invalid task '__import__'"),
        ("add socket -n s -q pyfi.queue1 -pn proc1 -t _helper", "invalid task '_helper'"),
        ("add processor -n p -g g -m os.__init__", "invalid processor module 'os.__init__'"),
        ("update processor -n proc1 -m a..b", "invalid processor module 'a..b'"),
    ],
)
def test_bad_input_gets_one_clear_line(first_flow: Flow, command: str, expected: str) -> None:
    # When a command refers to something wrong
    error = first_flow.fails(*split(command))
    # Then one line says what, with exit code 2 (checked by `fails`)
    assert expected in error


def test_invalid_choice_is_a_usage_error(flow: Flow) -> None:
    # When an enum option gets a value outside its choices
    result = flow("add", "queue", "-n", "q", "-t", "sideways", ok=False)
    # Then click refuses it with exit 2 and lists the choices
    assert result.exit_code == 2
    assert "'direct', 'topic', 'fanout'" in result.output


def test_failed_command_writes_nothing(first_flow: Flow, database: Database) -> None:
    # Given the number of tasks before
    tasks_before = count_rows(database, models.Task)
    # When a socket for a new function fails validation after its task was created
    first_flow.fails(
        *split(
            "add socket -n s9 -q pyfi.queue1 -pn proc1 -t brand_new --interval 5 --cron '* * * * *'"
        )
    )
    # Then neither the socket nor its task exists
    assert count_rows(database, models.Task) == tasks_before
    assert json.loads(first_flow("ls", "sockets", "--json").output)[-1]["name"] != "s9"


def test_duplicate_user_email_is_refused(flow: Flow) -> None:
    # Given a user
    flow("add", "user", "-n", "ann", "-e", "ann@example.org", input=TYPED)
    # When another user takes the same email
    error = flow.fails("add", "user", "-n", "bob", "-e", "ann@example.org", input=TYPED)
    # Then the email is named as the conflict
    assert "email" in error
