"""The reference's "Creating Your First Flow", built and listed through `flow`."""

from __future__ import annotations

import json

from tests.conftest import Flow


def test_first_flow_builds_and_lists(first_flow: Flow) -> None:
    # Given the first-flow network built with `flow add ...`
    # When the processor is shown
    shown = json.loads(first_flow("ls", "processor", "-n", "proc1", "--json").output)
    # Then it carries its two sockets and the plug between them
    assert shown["processor"]["module"] == "pyfi.processors.sample"
    assert shown["processor"]["concurrency"] == 5
    assert [s["name"] for s in shown["sockets"]] == [
        "pyfi.processors.sample.do_something",
        "pyfi.processors.sample.do_this",
    ]
    assert [(p["source"], p["target"]) for p in shown["plugs"]] == [
        ("pyfi.processors.sample.do_something", "pyfi.processors.sample.do_this")
    ]
    table = first_flow("ls", "sockets").output
    assert "pyfi.processors.sample.do_this" in table
    assert "pyfi.queue1" in table
