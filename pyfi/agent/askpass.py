"""The ``GIT_ASKPASS`` helper: answer git's credential prompts from the environment.

Git asks ``$GIT_ASKPASS "Username for 'https://host': "`` and reads the answer
from standard output. The agent sets :data:`ENV_USERNAME` and
:data:`ENV_PASSWORD` in the environment of one git process only, so the
credentials of a processor's URL never appear on a command line (visible to
every user through ``ps``), in ``.git/config`` or in a credential store.

Run as ``python -m pyfi.agent.askpass PROMPT``. It exits 1 with no output when
the prompt is not a username or password question, or when the variable is
unset, so git fails at once ("could not read Username") instead of using an
empty credential.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

# Environment variables, declared once.
ENV_USERNAME = "PYFI_GIT_USERNAME"
ENV_PASSWORD = "PYFI_GIT_PASSWORD"


def answer(prompt: str, environ: Mapping[str, str]) -> str | None:
    """The answer to one of git's prompts, or None if there is none.

    Parameters
    ----------
    prompt:
        Git's question, e.g. ``"Password for 'https://joe@host': "``.
    environ:
        Where to look the credentials up.

    Returns
    -------
    str | None
        The username or password, or None for an unknown prompt or a missing
        variable.
    """
    question = prompt.strip().lower()
    if question.startswith("username"):
        return environ.get(ENV_USERNAME)
    if question.startswith("password"):
        return environ.get(ENV_PASSWORD)
    return None


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Print the answer to the prompt in ``argv[0]``; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    value = answer(args[0] if args else "", os.environ if environ is None else environ)
    if value is None:
        return 1
    sys.stdout.write(value + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
