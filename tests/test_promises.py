"""The promises table in docs/reliability.md names tests that exist.

Each row of the table is a promise the docs make and the tests that prove it.  A
renamed or deleted test would leave a promise unproven while the page still says
otherwise, so every ``tests/...py::test_name`` reference must resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def promises_section() -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("<!-- promises")
    return text[start : text.index("<!-- /promises -->")]


def test_every_promise_names_at_least_one_test():
    rows = [
        line
        for line in promises_section().splitlines()
        if line.startswith("| ") and not line.startswith(("| promise", "| ---"))
    ]
    assert len(rows) >= 20
    bare = [row for row in rows if not REFERENCE.search(row)]
    assert not bare, bare


def test_every_named_test_exists():
    missing = []
    for path, name in REFERENCE.findall(promises_section()):
        source = ROOT / path
        if not source.exists() or not re.search(
            rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE
        ):
            missing.append(f"{path}::{name}")
    assert not missing, missing
