"""The embedded broker's claim folders against another process's recovery."""

from __future__ import annotations

import threading
from pathlib import Path

from pyfi.broker.filesystem import _Claims, recover_dead_claims


def test_a_claim_folder_being_made_is_never_taken_for_a_dead_ones(tmp_path: Path) -> None:
    # Given another consumer recovering dead claims as fast as it can
    stop = threading.Event()
    errors: list[BaseException] = []

    def recover() -> None:
        while not stop.is_set():
            try:
                recover_dead_claims(tmp_path)
            except BaseException as exc:  # reported below
                errors.append(exc)

    recoverer = threading.Thread(target=recover)
    recoverer.start()
    try:
        # When this process makes (and releases) claim folders meanwhile
        for _ in range(1500):
            claims = _Claims(tmp_path)
            # Then each is in place, locked, with its lock file, once made
            assert (claims.folder / ".lock").is_file()
            claims.release()
    finally:
        stop.set()
        recoverer.join()
    assert errors == []
    assert list((tmp_path / "claimed").iterdir()) == []
