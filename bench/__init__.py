"""Benchmarks: pyfi against Celery, Dramatiq and the raw broker (see docs/benchmarks.md)."""
