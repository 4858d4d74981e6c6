"""The one URL masker: what is secret in a URL, in free text, and what stays visible."""

from __future__ import annotations

import io
import logging

import pytest

from pyfi.config import mask_url as mask_url_from_config
from pyfi.masking import (
    UNPARSEABLE,
    MaskingFilter,
    has_password,
    is_masked,
    is_secret_parameter,
    mask_log_handlers,
    mask_url,
    mask_urls_in,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # A token given as the user alone, whatever the scheme
        ("https://ghp_T0ken@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        ("http://T0ken@example.org/repo", "http://***@example.org/repo"),
        ("git://T0ken@example.org/repo", "git://***@example.org/repo"),
        ("git+https://T0ken@github.com/org/pkg", "git+https://***@github.com/org/pkg"),
        ("redis://T0ken@cache:6379/0", "redis://***@cache:6379/0"),
        ("postgresql://app@db/pyfi", "postgresql://***@db/pyfi"),
        # A password: the user stays, the password goes (even with an @ inside)
        ("https://joe:p%40ss@github.com/org/r.git", "https://joe:***@github.com/org/r.git"),
        ("https://joe:p@ss@github.com/org/r.git", "https://joe:***@github.com/org/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
        # Secret parameters, any case, in the query or the fragment
        ("https://h/r?password=pw&x=1", "https://h/r?password=***&x=1"),
        ("https://h/r?x=1&TOKEN=t", "https://h/r?x=1&TOKEN=***"),
        ("https://h/r?access_token=t", "https://h/r?access_token=***"),
        ("https://h/r?api-key=k&apikey=k&key=k", "https://h/r?api-key=***&apikey=***&key=***"),
        ("https://h/r?client_secret=s&secret=s", "https://h/r?client_secret=***&secret=***"),
        (
            "https://b.s3/o?X-Amz-Signature=s&X-Amz-Credential=c",
            "https://b.s3/o?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        (
            "postgresql://db/pyfi?sslpassword=pw&sslmode=require",
            "postgresql://db/pyfi?sslpassword=***&sslmode=require",
        ),
        ("https://h/cb#access_token=t&state=1", "https://h/cb#access_token=***&state=1"),
        # Both at once
        ("amqp://u:pw@mq:5672//?token=t", "amqp://u:***@mq:5672//?token=***"),
    ],
)
def test_mask_url_hides_every_kind_of_secret(url: str, expected: str) -> None:
    # Given a URL carrying a secret in its user, password or parameters
    # When it is masked
    # Then the secret is replaced by *** and the rest is kept as written
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:org/repo.git",  # scp-like SSH: the user is an account
        "ssh://git@github.com/org/repo.git",
        "git+ssh://git@github.com/org/repo.git",
        "https://github.com/org/repo.git",
        "https://h/r?sslkey=/etc/k.pem&sslmode=require&x=",
        "https://h/r?bypass=1&keys=2&token",  # not secret names, or no value
        "sqlite:////var/lib/pyfi/pyfi.sqlite",
        "HTTPS://GitHub.com/Org/Repo",
        "not a url",
    ],
)
def test_mask_url_keeps_urls_without_secrets_as_written(url: str) -> None:
    # Given a URL without a secret
    # When / Then masking returns it exactly as written
    assert mask_url(url) == url


def test_mask_url_never_echoes_what_it_cannot_parse() -> None:
    # Given a URL urllib cannot parse (an unclosed IPv6 bracket) carrying a password
    url = "https://joe:s3cret@[::1/repo"
    # When / Then it is not shown at all
    assert mask_url(url) == UNPARSEABLE


def test_mask_url_is_the_one_config_exports() -> None:
    # Given the name code has long imported from pyfi.config
    # When / Then it is the project's one masker (user-only tokens included)
    assert mask_url_from_config is mask_url
    assert mask_url_from_config("https://T0ken@github.com/o/r") == "https://***@github.com/o/r"


def test_mask_urls_in_masks_every_url_quoted_in_a_tool_message() -> None:
    # Given git's and pip's messages quoting URLs with credentials
    text = (
        "fatal: unable to access 'https://ghp_T0ken@github.com/org/r.git/': 403\n"
        'ERROR: cannot fetch "https://u:pw@pypi.example/simple?token=t" (see git@github.com:o/r)'
    )
    # When the text is masked
    masked = mask_urls_in(text)
    # Then every secret is gone and the text around the URLs is kept
    assert masked == (
        "fatal: unable to access 'https://***@github.com/org/r.git/': 403\n"
        'ERROR: cannot fetch "https://u:***@pypi.example/simple?token=***" (see git@github.com:o/r)'
    )


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("Password", True),
        ("PWD", True),
        ("access_token", True),
        ("private-token", True),
        ("X-Amz-Security-Token", True),
        ("api_key", True),
        ("sig", True),
        ("sslmode", False),
        ("sslkey", False),
        ("keys", False),
        ("user", False),
    ],
)
def test_is_secret_parameter_follows_the_documented_names(name: str, secret: bool) -> None:
    # Given a query parameter name
    # When / Then it is secret exactly when its last word or suffix says so
    assert is_secret_parameter(name) is secret


def test_is_masked_tells_a_masked_value_from_a_real_one() -> None:
    # Given a masked URL and the URL it masks
    url = "https://T0ken@github.com/o/r"
    # When / Then only the masked one is recognised
    assert is_masked(mask_url(url))
    assert not is_masked(url)


def test_masked_log_handlers_write_no_credentials(request: pytest.FixtureRequest) -> None:
    # Given a logger whose handler is masked, as `flow agent` and `flow worker` set it up
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"pyfi.tests.{request.node.name}")
    logger.addHandler(handler)
    logger.propagate = False
    mask_log_handlers(logger)
    mask_log_handlers(logger)  # twice adds no second filter
    assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1
    # When a URL is logged as an argument, and inside an exception's traceback
    logger.warning("cloning %s", "https://T0kenA@github.com/o/r.git?token=T0kenB")
    try:
        raise ConnectionError("cannot reach amqp://u:T0kenC@mq:5672//")
    except ConnectionError:
        logger.exception("broker lost")
    # Then the lines are written, and no credential is in them
    written = stream.getvalue()
    assert "cloning https://***@github.com/o/r.git?token=***" in written
    assert "cannot reach amqp://u:***@mq:5672//" in written
    assert not any(token in written for token in ("T0kenA", "T0kenB", "T0kenC"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:pw@db/pyfi", True),
        ("redis://:pw@cache:6379/0", True),
        ("postgresql://db/pyfi?sslpassword=pw", True),
        ("https://joe:p%40ss@h/r", True),
        ("https://[::1/r", True),  # unparseable: assume the worst
        ("postgresql://postgres@db/pyfi", False),  # a lone user names an account here
        ("amqp://mq:5672//", False),
        ("https://h/p@q?sslmode=require", False),
    ],
)
def test_has_password_tells_a_password_from_a_user_name(url: str, expected: bool) -> None:
    # Given a URI given somewhere a password must not be
    # When / Then only a password or a secret parameter counts
    assert has_password(url) is expected
