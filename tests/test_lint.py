"""Type checking and linting run inside the test suite, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.lint, pytest.mark.timeout(300)]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_mypy_strict_src():
    proc = run("mypy", "--strict", "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check():
    proc = run("ruff", "check", "src", "tests", "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format():
    proc = run("ruff", "format", "--check", "src", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr
