"""The result preview of a live event: short, and never the cost of a whole large value."""

from __future__ import annotations

from pyfi.worker.sinks import PREVIEW_CHARS, preview


def test_small_values_preview_as_their_repr() -> None:
    for value in (None, True, 5, 2.5, "x", [1, 2], {"a": [1, {"b": "c"}]}):
        assert preview(value) == repr(value)


class Counted:
    """An element that counts how often it is shown."""

    shown = 0

    def __repr__(self) -> str:
        Counted.shown += 1
        return "c"


def test_large_values_preview_bounded_without_looking_at_all_of_them() -> None:
    # Given a result of a hundred thousand elements
    big = [Counted() for _ in range(100_000)]
    Counted.shown = 0
    # When it is previewed
    text = preview(big)
    # Then the preview is short, starts like the value, and only its head was looked at
    assert len(text) <= PREVIEW_CHARS
    assert text.startswith("[c, c, c")
    assert text.endswith("...]")
    assert Counted.shown <= 20
    assert len(preview("y" * 10_000)) <= PREVIEW_CHARS


def test_an_int_beyond_the_digit_limit_previews_without_raising() -> None:
    assert preview(10**5000) == "<int too large to show>"
