"""The public Python API of pyfi, under the import path the reference uses.

::

    from pyfi.client.api import Socket as Function, parallel, pipeline, funnel

    do_something = Function(name="pyfi.processors.sample.do_something")
    print(pipeline([do_something.p("One"), do_something.p("Two")])().get(timeout=30))

See ``docs/python-api.md``.
"""

from __future__ import annotations

from pyfi.client.compositions import Funnel, Parallel, Pipeline, funnel, parallel, pipeline
from pyfi.client.connection import connect, disconnect
from pyfi.client.functions import Signature, Socket
from pyfi.client.objects import Plug, Processor, ProcessorBase
from pyfi.client.provenance import call_graph, call_tree, flow_calls, tracking_calls
from pyfi.client.results import Result, gather
from pyfi.errors import CallFailed, CallTimeout

Function = Socket

__all__ = [
    "CallFailed",
    "CallTimeout",
    "Function",
    "Funnel",
    "Parallel",
    "Pipeline",
    "Plug",
    "Processor",
    "ProcessorBase",
    "Result",
    "Signature",
    "Socket",
    "call_graph",
    "call_tree",
    "connect",
    "disconnect",
    "flow_calls",
    "funnel",
    "gather",
    "parallel",
    "pipeline",
    "tracking_calls",
]
