"""Reading a function's parameters the way they are stored in argument rows."""

from __future__ import annotations

from typing import Any

from pyfi.network.signature import MAX_SOURCE_BYTES, ParameterSpec, cap_source, parameters_of


def plain(one: Any, two: Any) -> Any:
    return one + two


def defaulted(value: Any, seconds: float = 3.0) -> Any:
    return value, seconds


def variadic(first: Any, *args: Any, **kwargs: Any) -> Any:
    return first, args, kwargs


def keyword_only(value: Any, *, scale: int, offset: int = 0) -> Any:
    return value * scale + offset


def positional_only(left: Any, /, right: Any) -> Any:
    return left, right


def test_parameters_of_plain_function_are_required_in_order() -> None:
    # When a plain function is read
    parameters = parameters_of(plain)
    # Then each parameter is positional-or-keyword, required, at its position
    assert parameters == (
        ParameterSpec("one", 0, "positional_or_keyword", True),
        ParameterSpec("two", 1, "positional_or_keyword", True),
    )


def test_parameters_of_default_is_not_required() -> None:
    # When a parameter has a default
    parameters = parameters_of(defaulted)
    # Then only the one without a default is required
    assert parameters is not None
    assert [(p.name, p.required) for p in parameters] == [("value", True), ("seconds", False)]


def test_parameters_of_variadic_are_never_required() -> None:
    # When a function collects *args and **kwargs
    parameters = parameters_of(variadic)
    # Then they keep their kinds and are not required
    assert parameters == (
        ParameterSpec("first", 0, "positional_or_keyword", True),
        ParameterSpec("args", 1, "var_positional", False),
        ParameterSpec("kwargs", 2, "var_keyword", False),
    )


def test_parameters_of_keyword_only() -> None:
    # When parameters follow a bare *
    parameters = parameters_of(keyword_only)
    # Then they are keyword-only, required unless defaulted
    assert parameters is not None
    assert [(p.name, p.kind, p.required) for p in parameters] == [
        ("value", "positional_or_keyword", True),
        ("scale", "keyword_only", True),
        ("offset", "keyword_only", False),
    ]


def test_parameters_of_positional_only() -> None:
    # When a parameter precedes a /
    parameters = parameters_of(positional_only)
    # Then its kind says it cannot be given by name
    assert parameters is not None
    assert [p.kind for p in parameters] == ["positional_only", "positional_or_keyword"]


def test_parameters_of_builtin_without_signature_is_none() -> None:
    # Given a builtin that Python cannot introspect (`iter` has two forms and no signature)
    # When it is read
    # Then there is nothing to record, and no exception
    assert parameters_of(iter) is None


def test_parameters_of_method_leaves_out_self() -> None:
    # Given a bound method
    class Holder:
        def run(self, value: Any) -> Any:
            return value

    # Then its parameters are those a caller passes
    assert [p.name for p in parameters_of(Holder().run) or ()] == ["value"]


def test_cap_source_keeps_short_source_and_cuts_long_one_on_a_character() -> None:
    # Given a short source and one longer than the cap, made of 2-byte characters
    short = "def f():\n    return 1\n"
    long = "é" * MAX_SOURCE_BYTES
    # Then the short one is kept as is, the long one cut to the cap on a whole character
    assert cap_source(short) == short
    capped = cap_source(long)
    assert len(capped.encode("utf-8")) <= MAX_SOURCE_BYTES
    assert capped == "é" * (MAX_SOURCE_BYTES // 2)
