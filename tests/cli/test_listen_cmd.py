"""`flow listen`: a real listener process receives what a worker publishes.

The listener runs as a child process (it blocks, and CliRunner cannot share
stdout with a thread), started through a launcher that registers the command
on the root group if `pyfi.cli` does not yet. Tests publish only after the
child has printed "Listening to", which it does once it is subscribed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pyfi.cli import cli
from pyfi.cli.listen import listen
from pyfi.config import load_settings
from pyfi.events import Channel, EventPublisher, LiveEvent
from tests.conftest import requires_redis

pytestmark = pytest.mark.slow

LAUNCHER = (
    # A test runner started in the background may ignore SIGINT, and children
    # inherit that; restore Python's own handler, as an interactive shell has it.
    "import signal\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from pyfi.cli import cli, main\n"
    "from pyfi.cli.listen import listen\n"
    "cli.commands.setdefault('listen', listen)\n"
    "main()\n"
)
SOCKET = "pyfi.processors.sample.do_something"

ADAPTOR = """
import json, os

def record(event):
    with open(os.environ["SEEN_FILE"], "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\\n")

def explode(event):
    raise ValueError("adaptor cannot cope")

not_callable = 42
"""


class Listener:
    """A `flow listen` child process, subscribed by the time the constructor returns."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        # Buffered output, as a user's shell gives it, unless the test asks otherwise.
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        self.env = {**inherited, **env}
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "listen", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        assert self.process.stderr is not None
        self.first_line = self.process.stderr.readline()
        assert self.first_line.startswith("Listening to "), self.first_line + self.rest()

    def rest(self) -> str:
        out, err = self.process.communicate(timeout=20)
        return f"stdout={out!r} stderr={err!r}"

    def finish(self) -> tuple[int, str, str]:
        """Wait for the child; return its exit code, stdout and the rest of stderr."""
        out, err = self.process.communicate(timeout=20)
        return self.process.returncode, out, err

    def publish(self, *events: LiveEvent) -> None:
        """Publish as a worker would, with the child's configuration."""
        with EventPublisher(load_settings({}, self.env)) as publisher:
            for item in events:
                publisher.publish(item)


@pytest.fixture
def queue() -> str:
    """A queue name no other test (or process on the same Redis) uses."""
    return f"pyfi.t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_env(redis_url: str) -> dict[str, str]:
    return {"PYFI_BACKEND": redis_url}


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict[str, str]:
    """No server: the default filesystem broker under a data directory of the test's own."""
    return {"PYFI_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def adaptor_env(tmp_path: Path) -> dict[str, str]:
    """An importable adaptor module ``listen_adaptor`` that appends events to SEEN_FILE."""
    folder = tmp_path / "adaptors"
    folder.mkdir()
    (folder / "listen_adaptor.py").write_text(ADAPTOR, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "SEEN_FILE": str(tmp_path / "seen.jsonl")}


@pytest.fixture
def flow_cli(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """The root `flow` group with `listen` on it, for in-process CliRunner runs."""
    if "listen" not in cli.commands:
        monkeypatch.setitem(cli.commands, "listen", listen)
    return cli


def event(queue: str, state: str, channel: Channel = "task") -> LiveEvent:
    return LiveEvent.create(
        channel, state, queue=queue, processor="proc1", socket=SOCKET, call_id=f"call-{state}"
    )


@requires_redis
@pytest.mark.redis
def test_listen_json_prints_each_event_of_the_channel(
    redis_env: dict[str, str], queue: str
) -> None:
    # Given `flow listen` on the task channel of a room, against Redis
    room = f"{queue}.proc1"
    listener = Listener(
        "--name", room, "--channel", "task", "--count", "2", "--json", env=redis_env
    )
    assert listener.first_line == f"Listening to {room}.task\n"
    # When a worker publishes a log line and two task events
    listener.publish(
        event(queue, "info", channel="log"), event(queue, "received"), event(queue, "running")
    )
    # Then it prints the two task events as JSON, one per line, and stops
    code, out, err = listener.finish()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["channel"], e["state"], e["room"]) for e in lines] == [
        ("task", "received", room),
        ("task", "running", room),
    ]
    assert lines[0]["socket"] == SOCKET
    assert "Traceback" not in err


@requires_redis
@pytest.mark.redis
def test_listen_adaptor_receives_each_event(
    redis_env: dict[str, str], adaptor_env: dict[str, str], queue: str
) -> None:
    # Given `flow listen` with an adaptor module found through PYTHONPATH
    listener = Listener(
        *("-n", f"{queue}.proc1", "-c", "*", "--count", "2"),
        *("-a", "listen_adaptor.record"),
        env={**redis_env, **adaptor_env},
    )
    # When two events of different channels are published
    listener.publish(event(queue, "received"), event(queue, "postrun", channel="result"))
    code, out, err = listener.finish()
    # Then the adaptor got each one as a dict, and the readable lines were printed too
    assert code == 0, err
    seen = [json.loads(line) for line in Path(adaptor_env["SEEN_FILE"]).read_text().splitlines()]
    assert [(e["channel"], e["state"]) for e in seen] == [
        ("task", "received"),
        ("result", "postrun"),
    ]
    assert seen[0]["call_id"] == "call-received"
    printed = out.splitlines()
    assert len(printed) == 2
    assert f"{queue}.proc1 task   received {SOCKET} call-received" in printed[0]


def test_listen_embedded_default_needs_no_server(embedded_env: dict[str, str], queue: str) -> None:
    # Given no backend or broker configured: the filesystem fanout under the data dir
    listener = Listener("-n", f"{queue}.proc1", "-c", "error", "--count", "1", env=embedded_env)
    # When a failure is published
    failure = LiveEvent.create(
        "error",
        "failure",
        queue=queue,
        processor="proc1",
        socket=SOCKET,
        call_id="c-9",
        data={"type": "ValueError", "message": "bad input"},
    )
    listener.publish(failure)
    code, out, err = listener.finish()
    # Then one readable line shows where, what, which call and the message
    assert code == 0, err
    assert out.endswith(f" {queue}.proc1 error  failure  {SOCKET} c-9 bad input\n")
    assert Path(embedded_env["PYFI_DATA_DIR"], "broker", "events").is_dir()


def test_listen_global_filters_by_channel(embedded_env: dict[str, str], queue: str) -> None:
    # Given a listener on global that only wants errors
    listener = Listener("-n", "global", "-c", "error", "--count", "1", "--json", env=embedded_env)
    assert listener.first_line == "Listening to global\n"
    # When a task event and then an error event are published
    listener.publish(event(queue, "received"), event(queue, "dead", channel="error"))
    code, out, err = listener.finish()
    # Then only the error is printed
    assert code == 0, err
    assert [json.loads(line)["state"] for line in out.splitlines()] == ["dead"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_listen_interrupt_exits_cleanly_and_unbinds(
    embedded_env: dict[str, str], queue: str, stop: signal.Signals
) -> None:
    # Given a listener waiting for events on the embedded broker
    listener = Listener("-n", f"{queue}.proc1", "-c", "task", "--timeout", "20", env=embedded_env)
    bindings = Path(
        embedded_env["PYFI_DATA_DIR"], "broker", "events-control", "pyfi.events.exchange"
    )
    assert f".{listener.process.pid}." in bindings.read_text()
    # When the user presses Ctrl-C, or a supervisor sends SIGTERM
    listener.process.send_signal(stop)
    code, out, err = listener.finish()
    # Then it exits 0, silently, and removes its queue from the exchange
    assert (code, out, err) == (0, "", "")
    assert f".{listener.process.pid}." not in bindings.read_text()


def test_listen_closed_stdout_exits_quietly(embedded_env: dict[str, str], queue: str) -> None:
    # Given a listener whose reader goes away after the first line, as `| head -1` does
    listener = Listener("-n", f"{queue}.proc1", "-c", "task", "--timeout", "20", env=embedded_env)
    assert listener.process.stdout is not None
    listener.publish(event(queue, "received"))
    assert "received" in listener.process.stdout.readline()
    listener.process.stdout.close()
    # When more events arrive
    listener.publish(*(event(queue, f"s{number}") for number in range(3)))
    # Then it stops at once with exit 0, and no traceback or pipe complaint
    assert listener.process.stderr is not None
    assert listener.process.wait(timeout=10) == 0
    assert listener.process.stderr.read() == ""
    listener.process.stderr.close()


def test_listen_timeout_stops_without_events(embedded_env: dict[str, str], queue: str) -> None:
    # Given a listener with a short timeout and nothing published
    listener = Listener("-n", f"{queue}.proc1", "-c", "log", "--timeout", "0.5", env=embedded_env)
    # When the time is up, then it exits 0 having printed nothing
    assert listener.finish() == (0, "", "")


def test_listen_failing_adaptor_is_one_line_exit_1(
    embedded_env: dict[str, str], adaptor_env: dict[str, str], queue: str
) -> None:
    # Given an adaptor that raises
    listener = Listener(
        *("-n", f"{queue}.proc1", "-c", "task", "--timeout", "20"),
        *("-a", "listen_adaptor.explode"),
        env={**embedded_env, **adaptor_env},
    )
    # When an event arrives
    listener.publish(event(queue, "received"))
    code, _out, err = listener.finish()
    # Then the listener stops with one error line naming the adaptor and the exception
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "Error: adaptor listen_adaptor.explode raised ValueError: adaptor cannot cope "
        "on the received event of call call-received"
    ]


@pytest.mark.parametrize(
    ("adaptor", "complaint"),
    [
        ("no_such_module_x1.func", "cannot import adaptor module 'no_such_module_x1'"),
        ("listen_adaptor.missing", "adaptor module 'listen_adaptor' has no 'missing'"),
        ("listen_adaptor.not_callable", "adaptor 'listen_adaptor.not_callable' is not callable"),
        ("nodots", "not of the form module.function"),
    ],
)
def test_listen_bad_adaptor_is_one_line_exit_2(
    flow_cli: click.Group,
    adaptor_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    adaptor: str,
    complaint: str,
) -> None:
    # Given an adaptor path that does not lead to a function
    monkeypatch.syspath_prepend(adaptor_env["PYTHONPATH"].split(os.pathsep)[0])
    # When `flow listen` starts
    result = CliRunner().invoke(
        flow_cli, ["listen", "-n", "pyfi.queue1.proc1", "-c", "task", "-a", adaptor]
    )
    # Then it refuses before connecting: exit 2, one "Error:" line, no traceback
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert complaint in errors[0]
    assert "Listening" not in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["-n", "pyfi.queue1.proc1"], "--channel is required unless --name is global"),
        (["-n", "proc1", "-c", "task"], "is not a <queue>.<processor> room"),
        (["-n", "pyfi.queue1.proc1", "-c", "stdout"], "'stdout' is not one of"),
    ],
)
def test_listen_bad_name_or_channel_is_usage_error(
    flow_cli: click.Group, args: list[str], complaint: str
) -> None:
    # When `flow listen` is given a room without a channel, or a bad name or channel
    result = CliRunner().invoke(flow_cli, ["listen", *args])
    # Then click reports it as a usage error: exit 2, one "Error:" line
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert complaint in errors[0]


@requires_redis
@pytest.mark.redis
def test_listen_shows_each_event_while_still_running(redis_env: dict[str, str], queue: str) -> None:
    # Given `flow listen` with no --count: it keeps running
    room = f"{queue}.proc1"
    listener = Listener("--name", room, "--channel", "task", "--json", env=redis_env)
    try:
        # When a worker publishes one event
        listener.publish(event(queue, "received"))
        # Then its line reaches the reader while the listener waits for more
        # (output is flushed before each wait, not only at exit)
        assert listener.process.stdout is not None
        ready, _, _ = select.select([listener.process.stdout], [], [], 20)
        assert ready, "no line within 20 s"
        line = json.loads(listener.process.stdout.readline())
        assert (line["state"], line["room"]) == ("received", room)
        assert listener.process.poll() is None
    finally:
        listener.process.send_signal(signal.SIGINT)
        code, _out, err = listener.finish()
    assert code == 0, err
