"""Branch coverage is measured in every run; its floor applies to whole-suite runs only.

pyproject's addopts turn on pytest-cov and [tool.coverage.report] sets fail_under;
tests/conftest.py lifts the floor when a developer runs a file, a directory or a -k
selection.  Each check runs pytest in a subprocess on one small test file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_FILE = "tests/unit/test_plugin.py"

pytestmark = [pytest.mark.lint, pytest.mark.timeout(120)]


def pytest_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Keep the inner run's coverage data away from this run's .coverage file.
    env = dict(os.environ, COVERAGE_FILE=str(tmp_path / ".coverage"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_one_file_passes_without_the_floor(tmp_path: Path) -> None:
    proc = pytest_run(tmp_path, SMALL_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Cover" in proc.stdout  # measured, and branch coverage is reported
    assert "Required test coverage" not in proc.stdout


def test_a_whole_suite_run_below_the_floor_fails(tmp_path: Path) -> None:
    # The same small file as the configured test paths: a "whole suite" run.
    proc = pytest_run(tmp_path, "-o", f"testpaths={SMALL_FILE}")
    assert proc.returncode != 0
    assert "FAIL Required test coverage of" in proc.stdout


def test_no_cov_turns_measuring_off(tmp_path: Path) -> None:
    proc = pytest_run(tmp_path, "--no-cov", "-o", f"testpaths={SMALL_FILE}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Required test coverage" not in proc.stdout


def test_module_level_code_is_measured(tmp_path: Path) -> None:
    """smtpkit is imported after coverage starts (the plugin is not an early entry point)."""
    proc = pytest_run(tmp_path, SMALL_FILE)
    assert "module-not-measured" not in proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    init = [row for row in rows if row and row[0] == "src/smtpkit/__init__.py"]
    assert init == []  # skipped from the report because fully covered
