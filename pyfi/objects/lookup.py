"""Finding objects by the names users address them with."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfi.db import models
from pyfi.errors import DuplicateObject, ObjectNotFound, ProcessorNotFound

T = TypeVar("T")

# The `flow ls` listing that shows what names exist, for "not found" hints.
_LISTINGS: dict[type[Any], str] = {
    models.Queue: "queues",
    models.Processor: "processors",
    models.Socket: "sockets",
    models.Plug: "plugs",
    models.Node: "nodes",
    models.Agent: "agents",
    models.Worker: "workers",
    models.User: "users",
    models.Role: "roles",
    models.Scheduler: "schedulers",
}


def kind_of(model: type[Any]) -> str:
    """The user-facing name of a model's kind (``Processor`` -> ``processor``)."""
    return model.__name__.lower()


def find_by_name(session: Session, model: type[T], name: str) -> T | None:
    """The object of ``model`` called ``name``, or None."""
    return session.scalars(select(model).where(model.name == name)).one_or_none()  # type: ignore[attr-defined]


def get_by_name(session: Session, model: type[T], name: str, *, role: str | None = None) -> T:
    """The object of ``model`` called ``name``.

    ``role`` names what the object was wanted for ("source socket"), so that
    the error says which option was wrong.

    Raises
    ------
    ObjectNotFound
        With a hint naming the listing that shows the existing names.
    """
    found = find_by_name(session, model, name)
    if found is None:
        listing = _LISTINGS.get(model)
        hint = f"see `flow ls {listing}` for the existing ones" if listing else None
        if model is models.Processor and role is None:
            raise ProcessorNotFound(name, hint)
        raise ObjectNotFound(role or kind_of(model), name, hint)
    return found


def ensure_name_free(session: Session, model: type[Any], name: str) -> None:
    """Raise :class:`DuplicateObject` if ``name`` is taken for ``model``."""
    if find_by_name(session, model, name) is not None:
        raise DuplicateObject(kind_of(model), name)


def task_for(session: Session, processor: models.Processor, name: str) -> models.Task:
    """The processor's task called ``name``, created on first use."""
    for task in processor.tasks:
        if task.name == name:
            return task
    task = models.Task(name=name, processor=processor)
    session.add(task)
    return task


def argument_for(session: Session, task: models.Task, name: str) -> models.Argument:
    """The task's argument called ``name``, created on first use."""
    for argument in task.arguments:
        if argument.name == name:
            return argument
    argument = models.Argument(name=name, task=task)
    session.add(argument)
    return argument
