"""One base for everything that holds connections and is released by ``close()``."""

from __future__ import annotations

from typing import Self


class Closeable:
    """Usable in a ``with`` statement: leaving the block calls :meth:`close`."""

    def close(self) -> object:
        """Release what the object holds; it must not be used afterwards."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()
