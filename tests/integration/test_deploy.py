"""Deploying a processor with real git, real virtualenv and real pip (no mocks).

The source repository is ``processors_example`` committed twice into a
temporary git repository (the second commit changes ``do_this``'s text) and
served over ``file://``, or over a local HTTP server that demands a password
for the credential tests. The one expensive step, building a venv with pyfi
and its dependencies, happens once per session (``built``); the other venv
tests reuse it or fail before pip gets far.
"""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pyfi.agent.allowlist import check_repo, repo_allowed
from pyfi.agent.askpass import ENV_PASSWORD, ENV_USERNAME
from pyfi.agent.checkout import Checkout, checkout
from pyfi.agent.deploy import deploy
from pyfi.agent.text import display_url, first_error_line
from pyfi.agent.venv import (
    MARKER,
    ensure_venv,
    normalise_requirements,
    pyfi_requirement,
    venv_key,
)
from pyfi.errors import GitError, InvalidValue, RepoNotAllowed, VenvError
from tests.conftest import made_once

EXAMPLES = Path(__file__).resolve().parents[2] / "processors_example"
# Read before any test isolates HOME: the venv tests share the real pip cache.
PIP_CACHE = Path.home() / ".cache" / "pip"
VENV_TIMEOUT = pytest.mark.timeout(300)


@dataclass(frozen=True)
class SourceRepo:
    """The processors_example repository: two commits on ``main``."""

    path: Path
    first: str  # do_this says "Do this: ..."
    second: str  # do_this says "Do this now: ..."

    @property
    def url(self) -> str:
        return self.path.as_uri()


def _git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=pyfi tests", "-c", "user.email=tests@pyfi.invalid"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _sample(checkout_: Checkout) -> str:
    return (checkout_.path / "pyfi_examples" / "sample.py").read_text(encoding="utf-8")


def _make_source_repo(folder: Path) -> None:
    path = folder / "processors"
    shutil.copytree(
        EXAMPLES, path, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    _git(path, "init", "--quiet", "-b", "main")
    _git(path, "add", "--all")
    _git(path, "commit", "--quiet", "-m", "first")
    sample = path / "pyfi_examples" / "sample.py"
    sample.write_text(sample.read_text().replace('"Do this: ', '"Do this now: '))
    _git(path, "commit", "--quiet", "--all", "-m", "second")


@pytest.fixture(scope="session")
def source_repo(run_folder: Path) -> SourceRepo:
    """processors_example as a git repository whose head changed do_this.

    One for the whole run, so that every test process builds the same venv
    (see ``built``).
    """
    path = made_once(run_folder / "deploy-source", _make_source_repo) / "processors"
    first, second = (_git(path, "rev-parse", rev) for rev in ("HEAD~1", "HEAD"))
    return SourceRepo(path, first, second)


@dataclass(frozen=True)
class Built:
    checkout: Checkout
    python: Path
    cache_root: Path
    seconds: float


@pytest.fixture(scope="session")
def built(
    source_repo: SourceRepo, run_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Built:
    """The head of source_repo in a venv with pyfi: built once per run, in the run's cache.

    Test processes share the cache; ``ensure_venv``'s lock makes the others
    wait for the first one's build and reuse it.
    """
    code = checkout(source_repo.url, "main", None, tmp_path_factory.mktemp("work"))
    cache_root = run_folder / "deploy-venvs"
    started = time.monotonic()
    python = ensure_venv(code, None, cache_root, pyfi_requirement())
    seconds = time.monotonic() - started
    print(f"\nfirst venv build: {seconds:.1f}s")
    return Built(code, python, cache_root, seconds)


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=120, check=False
    )


# --- checkout ------------------------------------------------------------------


def test_checkout_branch_head_has_the_latest_code(source_repo: SourceRepo, tmp_path: Path) -> None:
    # Given a repository whose head changed do_this
    # When its branch is checked out without a commit
    code = checkout(source_repo.url, "main", None, tmp_path)
    # Then the head commit is in <root>/<full sha>, detached, with the new text
    assert code.commit == source_repo.second
    assert code.path == tmp_path / source_repo.second
    assert '"Do this now: ' in _sample(code)
    assert _git(code.path, "rev-parse", "HEAD") == source_repo.second
    assert code.url == source_repo.url
    assert [p.name for p in tmp_path.iterdir()] == [source_repo.second]  # no temp left


def test_checkout_older_commit_has_its_own_code(source_repo: SourceRepo, tmp_path: Path) -> None:
    # Given the sha of the first commit, abbreviated
    # When it is checked out
    code = checkout(source_repo.url, "main", source_repo.first[:10], tmp_path)
    # Then the folder is named by the full sha and holds the old text
    assert code.commit == source_repo.first
    assert code.path == tmp_path / source_repo.first
    assert '"Do this: ' in _sample(code)


def test_checkout_reuses_an_existing_folder_without_the_network(
    source_repo: SourceRepo, tmp_path: Path
) -> None:
    # Given a checkout made from a repository that then disappears
    gone = tmp_path / "gone"
    shutil.copytree(source_repo.path, gone)
    first = checkout(gone.as_uri(), "main", None, tmp_path / "work")
    shutil.rmtree(gone)
    # When the same commit is asked for again, in full and abbreviated
    again = checkout(gone.as_uri(), "main", first.commit, tmp_path / "work")
    short = checkout(gone.as_uri(), "main", first.commit[:7], tmp_path / "work")
    # Then the existing folder is used: no clone was needed
    assert again == first
    assert short == first
    # But the head of a branch can only be learnt from the remote
    with pytest.raises(GitError, match="cannot clone"):
        checkout(gone.as_uri(), "main", None, tmp_path / "work")


def test_checkout_unknown_commit_raises_git_error(source_repo: SourceRepo, tmp_path: Path) -> None:
    # Given commits that do not exist, abbreviated and full
    for commit in ("deadbeef", "d" * 40):
        # When they are checked out
        with pytest.raises(GitError) as caught:
            checkout(source_repo.url, "main", commit, tmp_path)
        # Then the error says so in one line, and no folder is left behind
        assert f"commit {commit} does not exist" in caught.value.message
        assert "\n" not in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_checkout_bad_url_raises_git_error(tmp_path: Path) -> None:
    # Given a URL with no repository behind it
    # When it is checked out
    with pytest.raises(GitError) as caught:
        checkout("file:///nonexistent/pyfi/repo", "main", None, tmp_path)
    # Then git's reason is the message
    message = caught.value.message
    assert message.startswith("cannot clone file:///nonexistent/pyfi/repo: ")
    assert "does not appear to be a git repository" in message or "does not exist" in message
    assert "\n" not in message


def test_checkout_unknown_branch_raises_git_error(source_repo: SourceRepo, tmp_path: Path) -> None:
    # Given a branch that does not exist
    # When its head is checked out, or a commit on it
    with pytest.raises(GitError, match="branch 'nope' does not exist"):
        checkout(source_repo.url, "nope", None, tmp_path)
    with pytest.raises(GitError, match="Remote branch nope not found"):
        checkout(source_repo.url, "nope", source_repo.first, tmp_path)
    # Then nothing is left behind
    assert list(tmp_path.iterdir()) == []


def test_checkout_refuses_values_git_would_read_as_options(
    source_repo: SourceRepo, tmp_path: Path
) -> None:
    # Given a branch or commit shaped like an option or a command
    # When they are checked out
    # Then git is never asked
    with pytest.raises(GitError, match="not a valid branch name"):
        checkout(source_repo.url, "--upload-pack=touch /tmp/pwned", None, tmp_path)
    with pytest.raises(GitError, match="is not a sha"):
        checkout(source_repo.url, "main", "--output=/tmp/pwned", tmp_path)


# --- allowlist -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "patterns", "allowed"),
    [
        ("file:///srv/repos/a.git", [], False),  # empty: nothing is allowed
        ("https://github.com/org/a.git", ["*"], True),
        ("file:///srv/repos/a.git", ["file://*"], True),
        ("https://github.com/org/a.git", ["file://*"], False),
        ("https://joe:tok@github.com/org/a.git", ["https://github.com/org/*"], True),
        ("https://GitHub.com/org/a.git", ["https://github.com/org/*"], True),
        ("https://github.com/other/a.git", ["https://github.com/org/*"], False),
        ("https://github.com/org/../other/a.git", ["https://github.com/org/*"], False),
        ("https://github.com/org/%2e%2e/other/a.git", ["https://github.com/org/*"], False),
        ("https://github.com@evil.example/org/a.git", ["https://github.com*"], False),
        ("-uhttps://github.com/org/a.git", ["*"], False),
        ("https://github.com/org/a b.git", ["*"], False),
    ],
)
def test_allowlist_matches_public_urls(url: str, patterns: list[str], allowed: bool) -> None:
    # Given a URL and allowed_repos globs
    # When the URL is checked
    # Then only well-formed URLs matching a glob (credentials stripped) pass
    assert repo_allowed(url, patterns) is allowed


def test_allowlist_refusal_names_masked_url_and_setting() -> None:
    # Given a credentialed URL that is not allowed
    url = "https://joe:s3cret@example.com/org/repo.git"
    # When it is checked
    with pytest.raises(RepoNotAllowed) as caught:
        check_repo(url, ["file://*"])
    # Then the one-line reason names the masked URL and the setting, not the password
    message = caught.value.message
    assert "https://joe:***@example.com/org/repo.git" in message
    assert "allowed_repos" in message
    assert "s3cret" not in message
    assert "\n" not in message
    check_repo(url, ["https://example.com/org/*"])  # a listed repository passes


def test_deploy_refuses_an_unlisted_repo_before_fetching(
    source_repo: SourceRepo, tmp_path: Path
) -> None:
    # Given an agent that allows only https repositories
    # When a file:// processor is deployed
    with pytest.raises(RepoNotAllowed):
        deploy(
            url=source_repo.url,
            branch="main",
            commit=None,
            requirements=None,
            workdir=tmp_path / "work",
            cache_root=tmp_path / "venvs",
            allowed=["https://github.com/org/*"],
        )
    # Then nothing was cloned or built
    assert list(tmp_path.iterdir()) == []


# --- credentials ---------------------------------------------------------------


def test_askpass_answers_from_the_environment() -> None:
    # Given credentials in the helper's environment
    env = {ENV_USERNAME: "joe", ENV_PASSWORD: "s3cret", "PATH": "/usr/bin:/bin"}

    def ask(prompt: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyfi.agent.askpass", prompt],
            env=environ,
            capture_output=True,
            text=True,
            check=False,
        )

    # When git asks for the username and the password
    # Then each comes out on stdout
    assert ask("Username for 'https://example.com': ", env).stdout == "joe\n"
    assert ask("Password for 'https://joe@example.com': ", env).stdout == "s3cret\n"
    # And an unknown question, or a missing variable, fails with no output
    for prompt, environ in (("Passphrase? ", env), ("Password: ", {"PATH": "/usr/bin"})):
        done = ask(prompt, environ)
        assert (done.returncode, done.stdout) == (1, "")


class _AuthHandler(SimpleHTTPRequestHandler):
    """Serves files (git's dumb HTTP protocol) to one Basic-auth user."""

    expected = ""
    seen: list[str]

    def do_GET(self) -> None:
        header = self.headers.get("Authorization", "")
        self.seen.append(header)
        if header != self.expected:
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Basic realm="pyfi"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_repo(source_repo: SourceRepo, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An http:// URL of a bare copy of source_repo that needs joe's password."""
    served = tmp_path / "served"
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", source_repo.url, str(served / "repo.git")],
        check=True,
    )
    _git(served / "repo.git", "update-server-info")
    token = base64.b64encode(b"joe:s3cr3t-Token").decode()
    seen: list[str] = []
    handler = type("Handler", (_AuthHandler,), {"expected": f"Basic {token}", "seen": seen})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo.git", seen
    server.shutdown()
    server.server_close()
    thread.join()


def _files_containing(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_checkout_credentials_never_reach_the_disk(
    http_repo: tuple[str, list[str]], tmp_path: Path, isolated_environment: Path
) -> None:
    # Given a repository behind a password, and a host whose git would store
    # every credential it learns (credential.helper = store)
    base, seen = http_repo
    home = isolated_environment
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    url = base.replace("http://", "http://joe:s3cr3t-Token@")
    # When it is checked out through a URL that embeds the credentials
    code = checkout(url, "main", None, tmp_path / "work", timeout_s=30)
    # Then git authenticated through askpass
    assert code.url == base
    assert '"Do this now: ' in _sample(code)
    assert any(header.startswith("Basic ") for header in seen)
    # And the password is nowhere: not in .git/config, the checkout or a credential store
    assert _git(code.path, "config", "remote.origin.url") == base
    assert _files_containing(tmp_path / "work", b"s3cr3t-Token") == []
    assert not (home / ".git-credentials").exists()


def test_checkout_wrong_password_fails_fast_without_leaking(
    http_repo: tuple[str, list[str]], tmp_path: Path
) -> None:
    # Given a wrong password, or none at all
    base, _ = http_repo
    for url in (base.replace("http://", "http://joe:wrong-Passw0rd@"), base):
        started = time.monotonic()
        # When the repository is checked out
        with pytest.raises(GitError) as caught:
            checkout(url, "main", None, tmp_path / "work", timeout_s=30)
        # Then git fails at once (no prompt waits for a keyboard), and says why
        assert time.monotonic() - started < 20
        message = caught.value.message
        assert message.startswith(f"cannot clone {display_url(url)}: ")
        assert "wrong-Passw0rd" not in message
        assert "\n" not in message
    assert _files_containing(tmp_path, b"wrong-Passw0rd") == []


# --- virtualenv ----------------------------------------------------------------


@VENV_TIMEOUT
def test_venv_runs_the_processor_and_pyfi(built: Built) -> None:
    # Given the session's venv, built from the head commit
    # When the processor's module and pyfi's CLI are used from it
    sample = _run(built.python, "-c", "import pyfi_examples.sample as s; print(s.do_this('x'))")
    cli = _run(built.python, "-m", "pyfi.cli", "--help")
    worker = _run(built.python, "-m", "pyfi.cli", "worker", "start", "--help")
    # Then both work, with the checked-out commit's code
    assert sample.stdout.strip() == "Do this now: x", sample.stderr
    assert cli.returncode == 0, cli.stderr
    assert "Usage" in cli.stdout
    assert "--processor" in worker.stdout, worker.stderr


@VENV_TIMEOUT
def test_venv_does_not_see_the_agents_packages(built: Built) -> None:
    # Given pytest, installed for the agent but never required by the processor
    # When the venv imports it
    done = _run(built.python, "-c", "import pytest")
    # Then it is not there: the venv has its own site-packages only
    assert done.returncode != 0
    assert "No module named 'pytest'" in done.stderr
    config = (built.python.parent.parent / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config


@VENV_TIMEOUT
def test_venv_second_call_reuses_the_cache(built: Built) -> None:
    # Given the session's finished venv
    marker = built.python.parent.parent / MARKER
    before = marker.stat().st_mtime_ns
    entries = sorted(p.name for p in built.cache_root.iterdir())
    # When the same checkout, requirements and pyfi are asked for again
    python = ensure_venv(built.checkout, "  \n# no extras\n", built.cache_root, pyfi_requirement())
    # Then the same interpreter comes back, untouched: pip did not run
    assert python == built.python
    assert marker.stat().st_mtime_ns == before
    assert sorted(p.name for p in built.cache_root.iterdir()) == entries
    print(f"first build took {built.seconds:.1f}s")


@VENV_TIMEOUT
def test_deploy_reuses_checkout_and_venv(
    built: Built, source_repo: SourceRepo, tmp_path: Path
) -> None:
    # Given the session's venv for the head commit
    # When the processor is deployed (in a new workdir, same venv cache)
    started = time.monotonic()
    result = deploy(
        url=source_repo.url,
        branch=None,
        commit=None,
        requirements=None,
        workdir=tmp_path / "proc1",
        cache_root=built.cache_root,
        allowed=["file://*"],
    )
    seconds = time.monotonic() - started
    # Then it checks out the head and reuses the cached venv
    assert result.python == built.python
    assert result.checkout.path == tmp_path / "proc1" / source_repo.second
    command = result.worker_command("proc1")
    assert command[:7] == [
        str(built.python),
        "-m",
        "pyfi.cli",
        "worker",
        "start",
        "--processor",
        "proc1",
    ]
    assert _run(Path(command[0]), *command[1:5], "--help").returncode == 0
    print(f"cached redeploy took {seconds:.2f}s")


@VENV_TIMEOUT
def test_venv_failing_requirement_leaves_nothing_cached(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a requirement no index has, and the remains of a crashed build
    monkeypatch.setenv("PIP_CACHE_DIR", str(PIP_CACHE))
    requirement = "nonexistent-pkg-xyz"
    cache_root = tmp_path / "venvs"
    stale = cache_root / venv_key(built.checkout, [requirement], pyfi_requirement())
    (stale / "bin").mkdir(parents=True)
    # When the venv is built
    with pytest.raises(VenvError) as caught:
        ensure_venv(built.checkout, requirement, cache_root, pyfi_requirement())
    # Then pip's reason is the message, and no venv folder is left
    message = caught.value.message
    assert "nonexistent-pkg-xyz" in message
    assert "\n" not in message
    assert [p for p in cache_root.iterdir() if not p.name.endswith(".lock")] == []


def test_venv_requirements_are_normalised_and_options_refused() -> None:
    # Given requirements text with comments, duplicates and newlines
    text = "requests>=2  # HTTP\nsix\n\n  requests>=2 attrs\n"
    # When it is normalised
    # Then only the specifiers remain, sorted and unique
    assert normalise_requirements(text) == ["attrs", "requests>=2", "six"]
    assert normalise_requirements(None) == []
    # And pip options are refused: they could redirect or read anything
    with pytest.raises(InvalidValue, match="--index-url"):
        normalise_requirements("six --index-url https://evil.example/simple")


def test_pyfi_requirement_points_at_the_local_source() -> None:
    # Given pyfi installed editable from this checkout
    # When the requirement for a venv is computed
    # Then it is this source folder, not a name on PyPI (where "pyfi" is another project)
    import pyfi

    assert Path(pyfi_requirement()) == Path(pyfi.__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "Cloning into 'x'...\nfatal: repository '/nope' does not exist\n",
            "repository '/nope' does not exist",
        ),
        (
            "WARNING: ignored\nERROR: Could not find a version for x\n"
            "ERROR: No matching distribution found for x\n",
            "Could not find a version for x",
        ),
        ("Traceback (most recent call last):\n  File ...\nImportError: no\n", "ImportError: no"),
        ("\n  \n", "no error message"),
    ],
)
def test_first_error_line_picks_the_reason(text: str, line: str) -> None:
    # Given a tool's error output
    # When its first error line is taken
    # Then it is the line that says what went wrong, without its prefix
    assert first_error_line(text) == line


def test_pyfi_fingerprint_changes_when_the_source_changes(tmp_path: Path) -> None:
    # Given a pyfi source folder
    from pyfi.agent.venv import pyfi_fingerprint

    package = tmp_path / "pyfi"
    package.mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname='pyfi'\n")
    module = package / "a.py"
    module.write_text("x = 1\n")
    before = pyfi_fingerprint(str(tmp_path))
    # When a module changes (an upgrade from the same folder)
    module.write_text("x = 22\n")
    # Then the fingerprint, and so the venv cache key, changes
    assert pyfi_fingerprint(str(tmp_path)) != before
    assert pyfi_fingerprint("pyfi @ git+https://example.org/pyfi@abc") == (
        "pyfi @ git+https://example.org/pyfi@abc"
    )
