"""pyfi's chaos suite: faults and hostile input against a deployed network.

Run it with ``python -m bench.chaos`` (or ``make chaos``); docs/reliability.md
says what each case does and what it found.
"""
