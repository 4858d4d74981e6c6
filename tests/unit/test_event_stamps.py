"""Event dates from epoch seconds: the text ``datetime.isoformat`` would write."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from pyfi.events.event import iso_ms


@pytest.mark.parametrize("epoch", [0.0, 1.999, 59.5, 1_700_000_000.123456, 4_102_444_799.25])
def test_a_date_reads_as_datetime_writes_it(epoch: float) -> None:
    expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    assert iso_ms(epoch) == expected


def test_dates_across_many_seconds_truncate_to_the_millisecond() -> None:
    # Given instants spread over days, in no order (the cached second changes often)
    chooser = random.Random(7)
    for _ in range(5_000):
        epoch = chooser.uniform(1_600_000_000, 1_600_300_000)
        # When each is written, then it reads back as that instant, truncated to the ms
        written = datetime.fromisoformat(iso_ms(epoch))
        assert written.tzinfo == UTC
        assert epoch - 0.001 - 1e-6 < written.timestamp() <= epoch + 1e-6
