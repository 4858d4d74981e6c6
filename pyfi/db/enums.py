"""The constrained values of the meta-model.

Each enum is stored as its ``value`` in a CHECK-constrained column (see
:func:`pyfi.db.types.enum_column`), and the CLI offers the same values as
choices, so a typo is caught before it reaches the database.
"""

from __future__ import annotations

import enum


class QueueType(enum.StrEnum):
    """The AMQP exchange type a queue object stands for."""

    DIRECT = "direct"
    TOPIC = "topic"
    FANOUT = "fanout"


class PlugType(enum.StrEnum):
    """What a plug carries: the source's result, or its failure."""

    RESULT = "RESULT"
    ERROR = "ERROR"


class Strategy(enum.StrEnum):
    """How a scheduler places work on nodes."""

    BALANCED = "BALANCED"
    EFFICIENT = "EFFICIENT"


class Misfire(enum.StrEnum):
    """What a schedule does with instants it missed (its scheduler was down or busy)."""

    SKIP = "skip"  # fire the latest missed instant only
    CATCH_UP = "catch-up"  # fire the missed instants, at most the socket's catch_up of them


class ProcessorStatus(enum.StrEnum):
    """What an agent last reported about a processor."""

    READY = "ready"
    DEPLOYING = "deploying"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"
    REFUSED = "refused"


class RequestedStatus(enum.StrEnum):
    """What a user asked a processor to be; agents reconcile towards it."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    REMOVED = "removed"


class AgentStatus(enum.StrEnum):
    """The lifecycle of an agent daemon."""

    STARTING = "starting"
    ONLINE = "online"
    STOPPING = "stopping"
    OFFLINE = "offline"


class WorkerStatus(enum.StrEnum):
    """The lifecycle of one worker process."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


class DeploymentStatus(enum.StrEnum):
    """Where one share of a processor stands on its host."""

    PENDING = "pending"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    FAILED = "failed"


class CallState(enum.StrEnum):
    """The lifecycle of one call of a socket function."""

    PENDING = "pending"
    RECEIVED = "received"
    RUNNING = "running"
    RETRYING = "retrying"
    FINISHED = "finished"
    FAILED = "failed"
    DEAD = "dead"

    @property
    def is_final(self) -> bool:
        """True once nothing more will happen to the call."""
        return self in (CallState.FINISHED, CallState.FAILED, CallState.DEAD)


# The states of a call that something may still happen to.
UNFINISHED_STATES = tuple(state for state in CallState if not state.is_final)


class EventName(enum.StrEnum):
    """The lifecycle events recorded against a call."""

    RECEIVED = "received"
    PRERUN = "prerun"
    POSTRUN = "postrun"
    RETRY = "retry"
    FAILURE = "failure"
    DEAD = "dead"


class Right(enum.StrEnum):
    """An atomic permission; it becomes a privilege when granted to a user or role."""

    ALL = "ALL"
    CREATE = "CREATE"
    READ = "READ"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    DB_DROP = "DB_DROP"
    DB_INIT = "DB_INIT"
    START_AGENT = "START_AGENT"
    RUN_TASK = "RUN_TASK"
    CANCEL_TASK = "CANCEL_TASK"
    START_PROCESSOR = "START_PROCESSOR"
    STOP_PROCESSOR = "STOP_PROCESSOR"
    PAUSE_PROCESSOR = "PAUSE_PROCESSOR"
    RESUME_PROCESSOR = "RESUME_PROCESSOR"
    LOCK_PROCESSOR = "LOCK_PROCESSOR"
    UNLOCK_PROCESSOR = "UNLOCK_PROCESSOR"
    VIEW_PROCESSOR = "VIEW_PROCESSOR"
    VIEW_PROCESSOR_CONFIG = "VIEW_PROCESSOR_CONFIG"
    VIEW_PROCESSOR_CODE = "VIEW_PROCESSOR_CODE"
    EDIT_PROCESSOR_CONFIG = "EDIT_PROCESSOR_CONFIG"
    EDIT_PROCESSOR_CODE = "EDIT_PROCESSOR_CODE"
    LS_PROCESSORS = "LS_PROCESSORS"
    LS_USERS = "LS_USERS"
    LS_USER = "LS_USER"
    LS_PLUGS = "LS_PLUGS"
    LS_SOCKETS = "LS_SOCKETS"
    LS_QUEUES = "LS_QUEUES"
    LS_AGENTS = "LS_AGENTS"
    LS_NODES = "LS_NODES"
    LS_SCHEDULERS = "LS_SCHEDULERS"
    LS_WORKERS = "LS_WORKERS"
    ADD_PROCESSOR = "ADD_PROCESSOR"
    ADD_AGENT = "ADD_AGENT"
    ADD_NODE = "ADD_NODE"
    ADD_PLUG = "ADD_PLUG"
    ADD_PRIVILEGE = "ADD_PRIVILEGE"
    ADD_QUEUE = "ADD_QUEUE"
    ADD_ROLE = "ADD_ROLE"
    ADD_SCHEDULER = "ADD_SCHEDULER"
    ADD_SOCKET = "ADD_SOCKET"
    ADD_USER = "ADD_USER"
    UPDATE_PROCESSOR = "UPDATE_PROCESSOR"
    UPDATE_AGENT = "UPDATE_AGENT"
    UPDATE_NODE = "UPDATE_NODE"
    UPDATE_PLUG = "UPDATE_PLUG"
    UPDATE_PRIVILEGE = "UPDATE_PRIVILEGE"
    UPDATE_QUEUE = "UPDATE_QUEUE"
    UPDATE_ROLE = "UPDATE_ROLE"
    UPDATE_SCHEDULER = "UPDATE_SCHEDULER"
    UPDATE_SOCKET = "UPDATE_SOCKET"
    UPDATE_USER = "UPDATE_USER"
    DELETE_PROCESSOR = "DELETE_PROCESSOR"
    DELETE_AGENT = "DELETE_AGENT"
    DELETE_NODE = "DELETE_NODE"
    DELETE_PLUG = "DELETE_PLUG"
    DELETE_PRIVILEGE = "DELETE_PRIVILEGE"
    DELETE_QUEUE = "DELETE_QUEUE"
    DELETE_ROLE = "DELETE_ROLE"
    DELETE_SCHEDULER = "DELETE_SCHEDULER"
    DELETE_SOCKET = "DELETE_SOCKET"
    DELETE_USER = "DELETE_USER"
    READ_PROCESSOR = "READ_PROCESSOR"
    READ_AGENT = "READ_AGENT"
    READ_NODE = "READ_NODE"
    READ_LOG = "READ_LOG"
    READ_PLUG = "READ_PLUG"
    READ_PRIVILEGE = "READ_PRIVILEGE"
    READ_QUEUE = "READ_QUEUE"
    READ_ROLE = "READ_ROLE"
    READ_SCHEDULER = "READ_SCHEDULER"
    READ_SOCKET = "READ_SOCKET"
    READ_USER = "READ_USER"
