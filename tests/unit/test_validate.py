"""Field checks that explain a bad value before the database refuses it."""

from __future__ import annotations

import pytest

from pyfi.db.enums import PlugType, QueueType
from pyfi.errors import InvalidValue
from pyfi.objects.validate import MINIMUMS, check_cron, check_minimums, check_name, coerce_enum


@pytest.mark.parametrize(
    "name",
    [
        "pyfi.processors.sample.do_something",
        "proc1",
        "a",
        "9lives",
        "host:queue_1-x",
        "n" * 120,
    ],
)
def test_check_name_accepts_routing_key_names(name: str) -> None:
    # Given a printable name of 1-120 allowed characters
    # When / Then it is returned unchanged
    assert check_name(name, "socket") == name


@pytest.mark.parametrize(
    "name",
    ["", "has space", "tab\there", ".leading-dot", "-leading-dash", "a/b", "caf\u00e9", "n" * 121],
)
def test_check_name_rejects_bad_names(name: str) -> None:
    # Given an empty, spaced, badly started, non-ASCII or over-long name
    # When / Then it is refused with the kind and the rule
    with pytest.raises(InvalidValue, match=r"invalid socket name .*1-120 letters"):
        check_name(name, "socket")


def test_check_name_rejects_trailing_newline() -> None:
    # Given a name followed by a newline (which `$` alone would let through)
    # When / Then it is refused
    with pytest.raises(InvalidValue):
        check_name("queue1\n", "queue")


def test_check_minimums_accepts_values_at_their_minimum() -> None:
    # Given every field exactly at its minimum, a None and an unknown field
    values = {**MINIMUMS, "timelimit": None, "unrelated": -100}
    # When / Then nothing is raised
    check_minimums(values)


@pytest.mark.parametrize(("field", "minimum"), sorted(MINIMUMS.items()))
def test_check_minimums_rejects_value_below_minimum(field: str, minimum: int) -> None:
    # Given one field one below its minimum
    # When / Then the error names the field, the minimum and the value
    expected = f"^{field} must be at least {minimum}, not {minimum - 1}$"
    with pytest.raises(InvalidValue, match=expected):
        check_minimums({field: minimum - 1})


@pytest.mark.parametrize(
    ("enum_class", "value", "expected"),
    [
        (QueueType, "direct", QueueType.DIRECT),
        (QueueType, "FANOUT", QueueType.FANOUT),
        (PlugType, "error", PlugType.ERROR),
        (PlugType, PlugType.RESULT, PlugType.RESULT),
    ],
)
def test_coerce_enum_matches_case_insensitively(
    enum_class: type[QueueType | PlugType], value: object, expected: object
) -> None:
    # Given a value in any case, or already a member
    # When / Then it becomes the matching member
    assert coerce_enum(enum_class, value, "type") is expected


def test_coerce_enum_lists_allowed_values_on_error() -> None:
    # Given a value that is no member of the enum
    # When it is coerced
    with pytest.raises(InvalidValue) as caught:
        coerce_enum(QueueType, "headers", "queue type")
    # Then the error names the field, the value and every allowed value
    assert caught.value.message == (
        "invalid queue type 'headers'; choose one of: direct, topic, fanout"
    )


@pytest.mark.parametrize(
    "expression",
    ["*/5 * * * *", "0 0 * * MON-FRI", "15,45 8-18 * * 1-5", "0 12 L * *", "  0  0 1 1 *  "],
)
def test_check_cron_accepts_five_field_expressions(expression: str) -> None:
    # Given a five-field cron expression
    # When / Then it is returned unchanged
    assert check_cron(expression) == expression


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "* * * * * *", "0 0 * * $(rm)", "every minute please ok", "61 * * * *"],
)
def test_check_cron_rejects_other_shapes(expression: str) -> None:
    # Given an expression with the wrong number of fields or stray characters
    # When / Then it is refused with an example
    with pytest.raises(InvalidValue, match=r"expected five fields such as '\*/5 \* \* \* \*'"):
        check_cron(expression)
