"""A crash-safe variant of kombu's filesystem transport, for the embedded default.

kombu's own filesystem transport deletes a message file the moment it is
read, so a worker killed mid-call loses the call, and a reader may pick up a
file that its writer has not finished. This transport keeps kombu's channel
semantics (exchanges, bindings, fanout, QoS) and changes only how message
files move:

* a publish writes a temporary file and renames it into
  ``queues/<queue>/`` — readers never see a partial message;
* a read *claims* the file by renaming it into this process's claim folder;
  the ack deletes it; a reject or a closed channel renames it back;
* a claim folder is locked (``flock``) for as long as its process lives, so
  any later process can tell a dead consumer's claims and put them back;
* a file name starts with the time it becomes due, so the broker — not a
  sleeping worker — holds delayed messages (retries with backoff).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import filesystem, virtual

from pyfi.limits import hold_compression

# Header carrying the epoch milliseconds at which a message becomes due.
DUE_HEADER = "x-pyfi-due-ms"
DEFAULT_POLLING_INTERVAL = 0.02


def _now_ms() -> int:
    return int(time.time() * 1000)


def _message_file_name(due_ms: int) -> str:
    # Zero-padded due time first, so a sorted listing is in delivery order.
    return f"{due_ms:015d}-{time.time_ns():020d}-{uuid.uuid4().hex}.msg"


def _due_ms(file_name: str) -> int:
    try:
        return int(file_name.split("-", 1)[0])
    except ValueError:
        return 0


class _Claims:
    """This process's claim folder, locked for its lifetime."""

    def __init__(self, root: Path) -> None:
        # The folder is made and locked under tmp/ and then renamed into
        # claimed/, so no other process's recovery ever sees it unlocked (it
        # would take a folder being made for a dead one and remove it).
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        making = root / "tmp" / f"claim-{name}"
        making.mkdir(parents=True)
        self._lock = (making / ".lock").open("w")
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.folder = root / "claimed" / name
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        os.rename(making, self.folder)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
        with contextlib.suppress(OSError):
            (self.folder / ".lock").unlink()
            for leftover in self.folder.iterdir():
                leftover.unlink()
            self.folder.rmdir()


def _entries(folder: Path) -> list[Path]:
    """The files of a claim folder, or none if another process just removed it."""
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def recover_dead_claims(root: Path) -> int:
    """Put back the messages claimed by processes that no longer hold their lock."""
    claimed = root / "claimed"
    if not claimed.is_dir():
        return 0
    recovered = 0
    for folder in _entries(claimed):
        lock_path = folder / ".lock"
        try:
            handle = lock_path.open("r")  # never create it: a missing lock is a release under way
        except OSError:
            continue
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # the owner is alive
            if os.fstat(handle.fileno()).st_nlink == 0:
                continue  # its owner is releasing it (it unlinks the lock first)
            for entry in _entries(folder):
                if entry.name == ".lock":
                    continue
                queue, _, file_name = entry.name.partition("__")
                target = root / "queues" / queue
                target.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(entry, target / file_name)
                    recovered += 1
            with contextlib.suppress(OSError):
                lock_path.unlink()
                folder.rmdir()
        finally:
            handle.close()
    return recovered


class Channel(filesystem.Channel):
    """kombu's filesystem channel with atomic puts, claims and due times."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.root = Path(self.transport_options["pyfi_root"])
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "queues").mkdir(parents=True, exist_ok=True)
        recover_dead_claims(self.root)
        self._claims = _Claims(self.root)
        self._claimed: dict[str, Path] = {}

    # -- writing ---------------------------------------------------------
    # kombu's two base classes declare _put differently; this matches the nearer one.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        headers = payload.get("headers") or {}
        due = int(headers.get(DUE_HEADER) or _now_ms())
        folder = self.root / "queues" / queue
        folder.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.rename(tmp, folder / _message_file_name(due))

    # -- reading ---------------------------------------------------------
    def _get(self, queue: Any, timeout: Any = None) -> Any:
        folder = self.root / "queues" / queue
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            raise Empty() from None
        now = _now_ms()
        for name in names:
            if _due_ms(name) > now:
                break  # sorted by due time: nothing further is due either
            claimed = self._claims.folder / f"{queue}__{name}"
            try:
                os.rename(folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            payload: dict[str, Any] = json.loads(claimed.read_text(encoding="utf-8"))
            hold_compression(payload.get("headers"))
            tag = payload.get("properties", {}).get("delivery_tag")
            if tag is not None:
                self._claimed[str(tag)] = claimed
            return payload
        raise Empty()

    def _size(self, queue: str) -> int:
        try:
            return len(os.listdir(self.root / "queues" / queue))
        except FileNotFoundError:
            return 0

    def _purge(self, queue: str) -> int:
        count = 0
        folder = self.root / "queues" / queue
        for name in os.listdir(folder) if folder.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
                count += 1
        return count

    # -- settling --------------------------------------------------------
    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple=multiple)
        claimed = self._claimed.pop(str(delivery_tag), None)
        if claimed is not None:
            with contextlib.suppress(FileNotFoundError):
                claimed.unlink()

    def _restore(self, message: Any) -> None:
        """Requeue (reject or channel close): move the claimed file back, in order."""
        tag = str(message.delivery_tag)
        claimed = self._claimed.pop(tag, None)
        if claimed is None or not claimed.exists():
            super()._restore(message)
            return
        queue, _, name = claimed.name.partition("__")
        os.rename(claimed, self.root / "queues" / queue / name)

    def close(self) -> None:
        super().close()  # restores unacked messages through _restore
        self._claims.release()


class Transport(filesystem.Transport):
    """The transport class handed to ``kombu.Connection(transport=...)``."""

    Channel = Channel
    driver_type = "filesystem"
    driver_name = "pyfi-filesystem"

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        # kombu keeps exchanges and bindings in one state per *class*, shared
        # by every connection of the process: a second broker folder would
        # then skip writing its bindings and drop messages. One per folder.
        self.state = virtual.BrokerState()
        self.polling_interval = client.transport_options.get(
            "polling_interval", DEFAULT_POLLING_INTERVAL
        )
