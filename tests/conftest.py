"""Settings shared by every test."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# The plugin's fixtures, loaded here rather than through the pytest11 entry point:
# pyproject's addopts pass `-p no:smtpkit`, because an entry-point plugin is imported
# before pytest-cov starts measuring, and smtpkit's module-level code would then count
# as not covered.  Users' suites get the plugin through the entry point as usual.
pytest_plugins = ["smtpkit.pytest_plugin"]

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Markers whose exclusion still counts as the whole suite for the coverage floor: the
# Postfix tests are skipped on machines without Postfix anyway.
_WHOLE_SUITE_MARKEXPRS = frozenset({"", "not postfix"})


def pytest_configure(config: pytest.Config) -> None:
    """Apply the coverage floor (pyproject's fail_under) to whole-suite runs only.

    Running one file or one directory (`pytest tests/unit/test_x.py`), or selecting
    with `-k`, covers a fraction of the code by design, so the floor would fail it.
    """
    whole_suite = (
        config.args_source is pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and config.option.markexpr in _WHOLE_SUITE_MARKEXPRS
    )
    coverage = config.pluginmanager.get_plugin("_cov")  # pytest-cov, when measuring
    if not whole_suite and coverage is not None:
        coverage.options.cov_fail_under = None
