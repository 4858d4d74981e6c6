"""Git's errors and the agent's log lines never show a repository's credentials.

Git quotes the URL it failed on, query string included, and the agent logs the
URL it clones: both go through the project's one masker. Real git, against a
port nothing listens on.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from pyfi.agent.checkout import checkout
from pyfi.agent.text import split_url
from pyfi.errors import GitError

USER_TOKEN = "ghp_Us3rT0kenValue"
QUERY_TOKEN = "qT0kenValue"


def _closed_port() -> int:
    """A port nothing listens on (bound by us, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("commit", [None, "a" * 40])
def test_checkout_failure_and_log_mask_tokens_in_user_and_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, commit: str | None
) -> None:
    # Given a repository URL with a token as its user and another in its query
    port = _closed_port()
    url = f"http://{USER_TOKEN}@127.0.0.1:{port}/org/r.git?access_token={QUERY_TOKEN}"
    caplog.set_level(logging.DEBUG, logger="pyfi")
    # When it is checked out (asking for the branch head, or cloning a given commit)
    with pytest.raises(GitError) as caught:
        checkout(url, "main", commit, tmp_path / "work", timeout_s=30)
    # Then git's reason is kept, masked, and no token is in the error or the log
    message = caught.value.message
    assert message.startswith(
        f"cannot clone http://***@127.0.0.1:{port}/org/r.git?access_token=***: "
    )
    assert "access_token=***" in message.split(": ", 1)[1]  # git's own quote of the URL
    for text in (message, caplog.text):
        assert USER_TOKEN not in text
        assert QUERY_TOKEN not in text


def test_repo_url_repr_hides_its_credentials() -> None:
    # Given a URL split into its public part and its credentials
    repo = split_url(f"https://joe:{USER_TOKEN}@github.com/org/r.git")
    # When / Then its repr (as in a traceback or a log line) does not show them
    assert USER_TOKEN not in repr(repo)
    assert repo.password == USER_TOKEN
