"""A processor's requirements: package names from allowed indexes, URLs from allowed repos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyfi import config
from pyfi.agent.requirements import DEFAULT_INDEXES, check_requirements, index_options
from pyfi.errors import CodeNotAllowed, InvalidValue

ALLOWED = ["https://github.com/myorg/*"]


def test_names_with_versions_extras_and_markers_are_accepted() -> None:
    # Given names with specifiers, extras and a marker (alone on its line), and comments
    text = (
        "requests>=2  # HTTP\n"
        "six attrs==23.1\n"
        "requests[socks] >= 2 ; python_version >= '3.8'\n"
        "\n# nothing\n"
    )
    # When they are checked
    # Then each comes back in its normal form, sorted and unique
    assert check_requirements(text, []) == [
        "attrs==23.1",
        "requests>=2",
        'requests[socks]>=2; python_version >= "3.8"',
        "six",
    ]
    assert check_requirements(None, []) == []


@pytest.mark.parametrize(
    "entry",
    [
        "git+https://github.com/myorg/tools@v1.2#egg=tools",
        "https://github.com/myorg/tools/archive/v1.zip",
        "tools @ git+https://github.com/myorg/tools@v1",
    ],
)
def test_urls_matching_allowed_repos_are_accepted(entry: str) -> None:
    # Given a URL (alone, or as a direct reference) under an allowed organisation
    # When it is checked
    # Then it is kept
    assert len(check_requirements(entry, ALLOWED)) == 1


@pytest.mark.parametrize(
    "entry",
    [
        "git+https://github.com/other/tools@v1",
        "https://evil.example/x-1.0-py3-none-any.whl",
        "x @ https://TOKEN@evil.example/x.whl",
        "git+https://github.com/myorg/../other/tools",
        "git+ssh://git@github.com/myorg/tools",
    ],
)
def test_urls_outside_allowed_repos_are_refused(entry: str) -> None:
    # Given a URL that matches none of allowed_repos
    # When it is checked
    with pytest.raises(CodeNotAllowed) as caught:
        check_requirements(f"six\n{entry}\n", ALLOWED)
    # Then it is refused in one line naming the setting, with no credential
    message = caught.value.message
    assert "allowed_repos" in message
    assert "TOKEN" not in message
    assert "\n" not in message


def test_urls_are_refused_when_no_repository_is_allowed() -> None:
    with pytest.raises(CodeNotAllowed):
        check_requirements("git+https://github.com/myorg/tools", [])


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("-e .", "-e"),
        ("six -i https://evil.example/simple", "-i"),
        ("six --index-url https://evil.example/simple", "--index-url"),
        ("six --extra-index-url=https://evil.example/simple", "--extra-index-url="),
        ("--trusted-host evil.example", "--trusted-host"),
        ("-r /etc/passwd", "-r"),
        ("-c constraints.txt", "-c"),
        ("--find-links /tmp", "--find-links"),
    ],
)
def test_pip_options_are_refused(text: str, option: str) -> None:
    # Given requirements holding a pip option
    # When they are checked
    with pytest.raises(InvalidValue, match="not pip options") as caught:
        check_requirements(text, ALLOWED)
    # Then the option is named, with where indexes are configured
    assert option in caught.value.message
    assert "allowed_indexes" in caught.value.message


@pytest.mark.parametrize("entry", ["./tools", "/tmp/x-1.0-py3-none-any.whl", "foo==", "a; b"])
def test_local_paths_and_malformed_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidValue, match="is not a package name with versions"):
        check_requirements(entry, ["*"])


def test_index_options_use_the_allowed_indexes_in_order() -> None:
    # Given two allowed indexes
    indexes = ["https://pypi.example/simple", "https://more.example/simple"]
    # When pip's options are made
    # Then the first is the index, the others extra indexes
    assert index_options(indexes) == [
        "--index-url",
        "https://pypi.example/simple",
        "--extra-index-url",
        "https://more.example/simple",
    ]
    # And none given means the standard index
    assert index_options([]) == ["--index-url", DEFAULT_INDEXES[0]]


def test_allowed_indexes_setting_defaults_to_pypi_and_reads_the_environment(
    tmp_path: Path,
) -> None:
    # Given no setting, then the environment variable
    base = {config.ENV_INI: os.devnull, config.ENV_DATA_DIR: str(tmp_path)}
    default = config.load_settings({}, base)
    given = config.load_settings(
        {}, {**base, config.ENV_ALLOWED_INDEXES: "https://a.example/simple, https://b/simple"}
    )
    # Then the default is the standard index, and the variable's list replaces it
    assert default.allowed_indexes == ("https://pypi.org/simple",)
    assert given.allowed_indexes == ("https://a.example/simple", "https://b/simple")
