"""The import layering of STYLE.md holds (import-linter contracts in pyproject.toml).

Mailer above transports above values (config, message, retry policy) above auth and
addresses above exceptions above replies; only the SMTP transport imports smtplib and
socket, only the retry module imports tenacity.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.lint, pytest.mark.timeout(120)]


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the package under *project*/src with *project*'s contracts."""
    # PYTHONPATH puts this copy of the package ahead of the installed one.
    env = dict(os.environ, PYTHONPATH=str(project / "src"))
    lint_imports = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        # --config works in every import-linter release (2.15, the newest for Python
        # 3.10, takes no positional path).
        [str(lint_imports), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", proc.stdout), proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # A value module reaching up into the mailer.
        ("_message.py", "from . import _mailer", "Mailer above transports"),
        # Replies are the bottom layer: they import nothing of smtpkit.
        ("_reply.py", "from . import _exceptions", "Mailer above transports"),
        # The pool must not know the SMTP transport that uses it.
        ("_transports/_pool.py", "from . import smtp", "Inside the transports"),
        # smtplib belongs to the SMTP transport.
        ("_mime.py", "import smtplib", "Only the SMTP transport"),
        # Only smtpkit.contrib.django imports Django (tests/django/test_settings.py
        # checks in a subprocess that `import smtpkit` does not import it at all).
        ("_mailer.py", "import django", "Only smtpkit.contrib imports"),
        # Only smtpkit.contrib.templates imports Jinja2 and css-inline.
        ("_mailer.py", "import jinja2", "Only smtpkit.contrib.templates imports"),
        # The integrations are the top layer: nothing in the core imports them.
        ("testing.py", "from . import contrib", "Mailer above transports"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    path = tmp_path / "src" / "smtpkit" / module
    path.write_text(path.read_text("utf-8") + f"\n{line}  # noqa\n", "utf-8")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout
    broken = [row for row in proc.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), proc.stdout
