"""Building compositions: what is refused before anything is sent."""

from __future__ import annotations

import pytest

from pyfi.client.compositions import funnel, parallel, pipeline
from pyfi.client.functions import Signature, Socket
from pyfi.client.results import Result
from pyfi.errors import InvalidValue


def test_partials_bind_arguments_without_sending() -> None:
    # Given a socket function (no connection is needed to build partials)
    do = Socket("some.socket")
    # When partials are taken
    step = do.p("x", key=1)
    # Then they carry the socket and the bound arguments, and choose how input arrives
    assert step == Signature("some.socket", ("x",), {"key": 1})
    assert step.into("value").input_to == "value"
    assert step.immutable().input_to is False
    assert step.input_to is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: pipeline([]), "needs at least one step"),
        (lambda: parallel(Socket("s").p()), "takes a list of steps"),
        (lambda: pipeline(["text"]), "pipeline step 1 is a str"),
        (lambda: parallel([Socket("s").p(), Result("id")]), "already sent"),
        (lambda: funnel([Socket("s").p()], "cb"), "funnel callback is a str"),
        (lambda: Socket("s").p().into("not a name"), "not a Python argument name"),
    ],
)
def test_bad_compositions_are_refused_with_one_line(build: object, message: str) -> None:
    # When a composition is built wrongly, then the error says what and how to fix it
    with pytest.raises(InvalidValue, match=message) as refused:
        build()  # type: ignore[operator]
    assert "\n" not in str(refused.value)


def test_funnel_callback_is_given_once() -> None:
    # Given a funnel that already has its callback
    step = Socket("s").p()
    with_callback = funnel([step], step)
    # When another one is given at run time, then it is refused before sending
    with pytest.raises(InvalidValue, match="already has a callback"):
        with_callback(step)
    with pytest.raises(InvalidValue, match="at most one input"):
        pipeline([step])(1, 2)
