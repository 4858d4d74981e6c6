"""Provenance from Python: call trees, call graphs and flow runs on the default connection.

Each function opens one short transaction on
:func:`pyfi.client.connection.database` and returns plain values that outlive
it: :class:`~pyfi.provenance.CallNode` trees, and calls as JSON-ready
dictionaries shaped like the rows of ``flow ls calls --json``. Nothing returned
is bound to a session, so nothing can fail later with a detached-instance error.

Call records are written in batches, a moment after the calls ran: a call that
just finished may not be found yet, and a run may still be growing.
"""

from __future__ import annotations

import uuid
from typing import Any

from pyfi import provenance
from pyfi.client.connection import database
from pyfi.db.serialize import to_dict
from pyfi.provenance import CallNode

__all__ = ["CallNode", "call_graph", "call_tree", "flow_calls", "tracking_calls"]


def call_tree(call_id: str | uuid.UUID) -> CallNode:
    """The calls ``call_id`` caused, recursively.

    Parameters
    ----------
    call_id:
        The call to start from.

    Returns
    -------
    CallNode
        The call with its children (calls whose parent it is, in its flow run).

    Raises
    ------
    InvalidValue
        ``call_id`` is not a UUID.
    ObjectNotFound
        No call with that id has been recorded (yet).
    """
    with database().transaction() as session:
        return provenance.call_tree(session, call_id)


def call_graph(call_id: str | uuid.UUID) -> tuple[CallNode, str]:
    """The whole call tree ``call_id`` sits in, from its root, and ``call_id`` itself.

    Parameters
    ----------
    call_id:
        Any call of the tree.

    Returns
    -------
    tuple[CallNode, str]
        The root's tree and the asked call's id (the focus).

    Raises
    ------
    InvalidValue
        ``call_id`` is not a UUID.
    ObjectNotFound
        No call with that id has been recorded (yet).
    """
    with database().transaction() as session:
        return provenance.call_graph(session, call_id)


def flow_calls(call_id: str | uuid.UUID) -> list[dict[str, Any]]:
    """Every call of the flow run ``call_id`` belongs to, in the order they started.

    Parameters
    ----------
    call_id:
        Any call of the run.

    Returns
    -------
    list[dict[str, Any]]
        JSON-ready calls (string ids, ISO timestamps).

    Raises
    ------
    InvalidValue
        ``call_id`` is not a UUID.
    ObjectNotFound
        No call with that id has been recorded (yet).
    """
    with database().transaction() as session:
        return [to_dict(call) for call in provenance.flow_calls(session, call_id)]


def tracking_calls(tracking_id: str | uuid.UUID) -> list[dict[str, Any]]:
    """Every call of one flow run, in the order they started.

    Parameters
    ----------
    tracking_id:
        The flow run (``Message.tracking_id``).

    Returns
    -------
    list[dict[str, Any]]
        JSON-ready calls; empty if none of the run has been recorded (yet).

    Raises
    ------
    InvalidValue
        ``tracking_id`` is not a UUID.
    """
    with database().transaction() as session:
        return [to_dict(call) for call in provenance.tracking_calls(session, tracking_id)]
