"""One adapter per system measured: pyfi, Celery, Dramatiq, and the raw broker."""
