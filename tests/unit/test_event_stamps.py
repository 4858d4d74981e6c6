"""Event dates from epoch seconds: the text ``datetime.isoformat`` would write."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from pyfi.events.event import iso_ms


def _expected(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    "epoch", [0.0, 1.999, 59.5, 1_700_000_071.745, 1_700_000_000.123456, 4_102_444_799.25]
)
def test_a_date_reads_as_datetime_writes_it(epoch: float) -> None:
    assert iso_ms(epoch) == _expected(epoch)


def test_dates_of_many_instants_are_the_text_datetime_writes() -> None:
    # Given instants over days, in no order (the cached second changes often):
    # any instant, and instants on an exact millisecond or microsecond, where
    # float arithmetic is most likely to land a millisecond early
    chooser = random.Random(7)
    instants = [chooser.uniform(1_600_000_000, 1_900_000_000) for _ in range(3_000)]
    instants += [round(chooser.uniform(1_600_000_000, 1_900_000_000), 3) for _ in range(3_000)]
    instants += [round(chooser.uniform(1_600_000_000, 1_900_000_000), 6) for _ in range(3_000)]
    # When each is written, then it is the text datetime writes for it
    assert [epoch for epoch in instants if iso_ms(epoch) != _expected(epoch)] == []
