"""Which rights a broad right stands for (pyfi.auth.rights)."""

from __future__ import annotations

from pyfi.auth.rights import IMPLIES, widen
from pyfi.db.enums import Right


def test_all_implies_every_right() -> None:
    assert IMPLIES[Right.ALL] == frozenset(Right)


def test_the_broad_rights_imply_their_families_and_nothing_else() -> None:
    assert Right.ADD_PROCESSOR in IMPLIES[Right.CREATE]
    assert Right.DELETE_PROCESSOR not in IMPLIES[Right.CREATE]
    assert {Right.LS_USERS, Right.READ_LOG, Right.VIEW_PROCESSOR_CODE} <= IMPLIES[Right.READ]
    assert Right.EDIT_PROCESSOR_CODE not in IMPLIES[Right.READ]
    assert {Right.UPDATE_USER, Right.EDIT_PROCESSOR_CONFIG} <= IMPLIES[Right.UPDATE]
    assert IMPLIES[Right.DELETE] == {r for r in Right if r.value.startswith("DELETE")}
    assert Right.DB_DROP not in IMPLIES[Right.DELETE] | IMPLIES[Right.UPDATE]


def test_a_narrow_right_implies_only_itself() -> None:
    assert IMPLIES[Right.RUN_TASK] == {Right.RUN_TASK}
    assert widen([Right.RUN_TASK, Right.DB_DROP]) == {Right.RUN_TASK, Right.DB_DROP}
