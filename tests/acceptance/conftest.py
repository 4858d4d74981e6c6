"""Fixtures shared by the acceptance tests of agents."""

from tests.acceptance.agents import example_repo, venv_cache

__all__ = ["example_repo", "venv_cache"]
