"""pyfi: a distributed dataflow mesh for Python.

The public client API is re-exported here as it lands; for now the package
exposes its version and its errors.
"""

from __future__ import annotations

from pyfi.errors import (
    ConfigurationError,
    DatabaseNotInitialised,
    DatabaseUnavailable,
    DuplicateObject,
    FlowError,
    InvalidValue,
    ObjectInUse,
    ObjectNotFound,
    ProcessorNotFound,
    UserError,
)

__version__ = "0.1.0"

__all__ = [
    # errors
    "ConfigurationError",
    "DatabaseNotInitialised",
    "DatabaseUnavailable",
    "DuplicateObject",
    "FlowError",
    "InvalidValue",
    "ObjectInUse",
    "ObjectNotFound",
    "ProcessorNotFound",
    "UserError",
    # metadata
    "__version__",
]
