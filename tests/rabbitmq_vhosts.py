"""RabbitMQ virtual hosts for the tests of one pytest process, made in batches.

A test on RabbitMQ gets a virtual host of its own (queue and exchange names
are fixed by the model, so nothing else isolates tests that run at the same
time or one after another). Every ``rabbitmqctl`` run boots an Erlang VM,
about 0.7 s of CPU and a second or more of waiting, and a test used to make
its host with three of them (add, set permissions, delete). Here one
``import_definitions`` makes a batch of hosts with their permissions (read
from its standard input: the server, not the tool, would read a file), and a
used host is deleted by a ``rabbitmqctl`` the test does not wait for.
"""

from __future__ import annotations

import json
import subprocess
import uuid

BATCH = 4
RABBITMQCTL = ["rabbitmqctl", "-q"]


class VirtualHosts:
    """Hands out fresh virtual hosts that ``user`` may use fully; deletes them when done."""

    def __init__(self, user: str) -> None:
        self._user = user
        self._ready: list[str] = []
        self._deleting: list[subprocess.Popen[bytes]] = []

    def take(self) -> str:
        """A virtual host no one has used."""
        if not self._ready:
            self._make(BATCH)
        return self._ready.pop()

    def discard(self, vhost: str) -> None:
        """Start deleting ``vhost`` (and whatever it holds) without waiting for it."""
        self._deleting = [p for p in self._deleting if p.poll() is None]
        self._deleting.append(
            subprocess.Popen(
                [*RABBITMQCTL, "delete_vhost", vhost],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def close(self) -> None:
        """Delete the hosts never handed out, and wait for every deletion."""
        for vhost in self._ready:
            self.discard(vhost)
        self._ready.clear()
        for process in self._deleting:
            process.wait(timeout=120)

    def _make(self, count: int) -> None:
        names = [f"pyfi_t_{uuid.uuid4().hex[:12]}" for _ in range(count)]
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        definitions = {
            "vhosts": [{"name": name} for name in names],
            "permissions": [{"user": self._user, "vhost": name, **everything} for name in names],
        }
        subprocess.run(
            [*RABBITMQCTL, "import_definitions"],
            input=json.dumps(definitions).encode(),
            check=True,
            capture_output=True,
        )
        self._ready.extend(names)
