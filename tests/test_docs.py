"""Run every fenced ``python`` block of README.md and docs/**/*.md.

Each block runs on its own, in a fresh module, so every example must be complete.
Blocks fenced as ``py`` are shown but not run (they need a real provider).  A block
that defines ``test_*`` functions is also run as a pytest file, so examples of the
pytest plugin are checked against the real fixtures.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
_FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks(path: Path) -> list[Block]:
    """Parse the fenced code blocks of one Markdown file (CommonMark fences)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = _FENCE_RE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        start = index
        body: list[str] = []
        index += 1
        while True:
            if index >= len(lines):
                msg = f"{path}:{start + 1}: unclosed code fence"
                raise AssertionError(msg)
            line = lines[index]
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(
                fence[0]
            ):
                break
            # Remove the fence's own indentation (blocks inside lists).
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            index += 1
        index += 1
        source = "\n".join(body) + "\n"
        blocks.append(Block(path, start + 1, opening["info"].strip(), source))
    return blocks


ALL_BLOCKS = [block for path in _doc_files() for block in _blocks(path)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.info == "python"]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block_runs(
    block: Block,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files do it in a scratch dir
    # Pad with blank lines so tracebacks point at the Markdown file's own lines.
    code = compile("\n" * block.line + block.source, str(block.path), "exec")
    module = types.ModuleType(f"docs_example_{block.line}")
    module.__file__ = str(block.path)
    # dataclasses and pydantic look classes' modules up in sys.modules.
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(code, module.__dict__)  # noqa: S102 - running the documentation is the point

    tests = [name for name in vars(module) if name.startswith("test_")]
    if tests:
        pytester: pytest.Pytester = request.getfixturevalue("pytester")
        pytester.makepyfile(test_example=block.source)
        result = pytester.runpytest_inprocess(
            "-p",
            "no:cacheprovider",
            # pytest-asyncio (our test extra) warns when a run's ini leaves it unset.
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        )
        result.assert_outcomes(passed=len(tests))


def test_blocks_were_found() -> None:
    """Every page that teaches has at least one example that really runs."""
    teaching = [
        ROOT / "README.md",
        ROOT / "docs" / "index.md",
        ROOT / "docs" / "quickstart.md",
        *sorted((ROOT / "docs" / "guide").glob("*.md")),
    ]
    without = [
        str(path.relative_to(ROOT))
        for path in teaching
        if not path.exists()
        or not any(b.path == path and b.info == "python" for b in ALL_BLOCKS)
    ]
    assert without == []
    assert len(teaching) >= 11  # README, index, quickstart and the eight guides


def test_fence_info_strings_are_known() -> None:
    """A typo such as ``pyhton`` would silently skip an example."""
    known = {"", "python", "py", "sh", "text", "toml", "ini", "json"}
    unknown = [f"{b.id} {b.info!r}" for b in ALL_BLOCKS if b.info not in known]
    assert unknown == []
