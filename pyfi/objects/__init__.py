"""Operations on the meta-model's objects by name, shared by the CLI and the Python API."""

from __future__ import annotations

from pyfi.objects.crud import create, delete, update
from pyfi.objects.grants import grant, revoke, set_roles
from pyfi.objects.kinds import KINDS, Kind, kind_named
from pyfi.objects.lookup import find_by_name, get_by_name

__all__ = [
    "KINDS",
    "Kind",
    "create",
    "delete",
    "find_by_name",
    "get_by_name",
    "grant",
    "kind_named",
    "revoke",
    "set_roles",
    "update",
]
