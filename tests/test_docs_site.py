"""The documentation site builds strictly, and its API reference covers the public API.

``mkdocs build --strict`` (mkdocs.yml) fails on a broken link or anchor, a page left out
of the nav, an object mkdocstrings cannot find and a cross-reference autorefs cannot
resolve.  The site is built into a temporary directory, never into the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import smtpkit
import smtpkit.auth
import smtpkit.testing

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "reference" / "api.md"

pytestmark = [pytest.mark.lint, pytest.mark.timeout(120)]


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` for the project at *project* into *site*."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's banner, not a finding
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,  # snippets (docs/changelog.md) resolve from the project root
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    proc = build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text("utf-8")
    # Docstrings rendered (Google sections) and signatures cross-referenced.
    assert 'id="smtpkit.Mailer"' in api
    pool_limits = api[api.index('id="smtpkit.PoolLimits"') :]
    pool_limits = pool_limits[: pool_limits.index('id="smtpkit.DEFAULT_POOL_LIMITS"')]
    assert "Attributes:" in pool_limits
    assert "per_connection_rate" in pool_limits
    assert "Raises:" in api
    assert 'href="#smtpkit.SMTPConfig"' in api
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text("utf-8")
    assert "Keep a Changelog" in changelog  # the root CHANGELOG.md, included
    assert not (ROOT / "site").exists()


def _copy_project(dest: Path) -> None:
    for name in ("mkdocs.yml", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("docs", "src"):
        shutil.copytree(
            ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__")
        )


@pytest.mark.parametrize(
    ("page", "text", "complaint"),
    [
        (
            "docs/index.md",
            "[TLS](guide/tls.md#no-such-section)",
            "does not contain an anchor",
        ),
        (
            "docs/index.md",
            "[gone](guide/no-such-page.md)",
            "not found among documentation",
        ),
        (
            "docs/reference/api.md",
            "[send][smtpkit.Mailer.no_such]",
            "cross-reference target",
        ),
        ("docs/reference/api.md", "::: smtpkit.NoSuchName", "could not be found"),
        ("docs/orphan.md", "# A page nobody linked", "not included in the"),
    ],
    ids=["anchor", "page", "reference", "object", "nav"],
)
def test_strict_build_refuses(
    tmp_path: Path, page: str, text: str, complaint: str
) -> None:
    """Each kind of breakage the strict build promises to catch really fails it."""
    project = tmp_path / "project"
    project.mkdir()
    _copy_project(project)
    target = project / page
    existing = target.read_text("utf-8") if target.exists() else ""
    target.write_text(existing + "\n" + text + "\n", "utf-8")
    proc = build(project, tmp_path / "site")
    assert proc.returncode != 0
    assert complaint in proc.stdout + proc.stderr


def _documented() -> set[str]:
    return set(re.findall(r"^::: ([\w.]+)$", API_PAGE.read_text("utf-8"), re.MULTILINE))


def test_api_reference_lists_every_public_name() -> None:
    documented = _documented()
    missing = [
        f"smtpkit.{name}"
        for name in smtpkit.__all__
        if name != "__version__" and f"smtpkit.{name}" not in documented
    ]
    assert missing == []
    # The two public submodules are rendered whole, with every member of their __all__.
    assert {"smtpkit.auth", "smtpkit.testing", "smtpkit.pytest_plugin"} <= documented
    assert smtpkit.auth.__all__
    assert smtpkit.testing.__all__


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text("utf-8")
    pages = sorted(
        p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")
    )
    assert [p for p in pages if f": {p}" not in nav] == []


def _readme() -> str:
    return (ROOT / "README.md").read_text("utf-8")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = re.findall(r"`(python3 -m venv [^`]+)`", _readme())
    [test_command] = [c for c in commands if c.endswith("-m pytest")]
    ci = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    assert test_command in ci


def test_install_lines_name_the_distribution() -> None:
    """`smtpkit` on the index is someone else's project: never tell users to install it."""
    texts = {
        path.relative_to(ROOT).as_posix(): path.read_text("utf-8")
        for pattern in ("*.md", "docs/**/*.md", "examples/*", "benchmarks/*")
        for path in ROOT.glob(pattern)
        if path.is_file()
    }
    wrong = re.compile(r"pip install (?:-U |--upgrade )?[\"']?smtpkit\b")
    assert [name for name, text in texts.items() if wrong.search(text)] == []
    assert "pip install pysmtpkit" in texts["README.md"]
    assert "pip install pysmtpkit" in texts["docs/quickstart.md"]
    assert "pip uninstall smtpkit" in texts["README.md"]
    install = texts["README.md"].split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "the import name is **`smtpkit`**" in install


def test_readme_order() -> None:
    """What it is, the two set-up commands, then Install, Usage and Features."""
    headings = re.findall(r"^## (.+)$", _readme(), re.MULTILINE)
    assert headings[:3] == ["Install", "Usage", "Features"]
    before_install = _readme().split("## Install", 1)[0]
    assert before_install.count("python3 -m venv .venv") == 2
    # Contributor matters live in docs/contributing.md; the README only points there.
    body, pointer = _readme().split("## Contributing", 1)
    assert "docs/contributing.md" in pointer
    assert len(pointer.strip().splitlines()) <= 3
    for contributor_matter in (
        "ovecot",
        "CI=true",
        "tests/mta/install.sh",
        "ruff check",
    ):
        assert contributor_matter not in body
