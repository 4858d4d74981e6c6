"""`python -m pyfi.cli` runs `flow`."""

from pyfi.cli import main

main()
