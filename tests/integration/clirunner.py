"""Run the ``smtpkit`` command line two ways: as a subprocess, and in-process.

The subprocess (``sys.executable -m smtpkit``) is what users run; the in-process
call runs the same ``main()`` with the same arguments, environment and input, so
coverage sees it.  ``Run`` is what either returns.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest

from smtpkit._cli import main
from smtpkit._cli._output import Output

# Variables that would change what the command does: start from none of them.
_CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_")}


@dataclass(frozen=True)
class Run:
    """One run of the command."""

    code: int
    out: str
    err: str
    raw_out: bytes

    @property
    def both(self) -> str:
        return self.out + self.err


Cli = Callable[..., Run]


def run_subprocess(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: bytes = b""
) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "smtpkit", *args],
        input=stdin,
        capture_output=True,
        env={**_CLEAN_ENV, **(env or {})},
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    return Run(
        proc.returncode, out, proc.stderr.decode("utf-8", "replace"), proc.stdout
    )


def run_inline(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    prompt: Callable[[str], str] | None = None,
    tty: bool = False,
) -> Run:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n")
    stderr = _Terminal() if tty else io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    kwargs = {} if prompt is None else {"prompt": prompt}
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = _main_code(
                list(args),
                environ={**_CLEAN_ENV, **(env or {})},
                output=Output(stdout, stderr),
                **kwargs,
            )
    finally:
        sys.stdin = old_stdin
    stdout.flush()
    raw = stdout.buffer.getvalue()  # type: ignore[attr-defined]
    return Run(int(code), raw.decode("utf-8", "replace"), stderr.getvalue(), raw)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _main_code(*args: object, **kwargs: object) -> int:
    try:
        return main(*args, **kwargs)  # type: ignore[arg-type]
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 1


@pytest.fixture(name="cli", params=["subprocess", "inline"])
def cli_fixture(request: pytest.FixtureRequest) -> Cli:
    """Run ``smtpkit ARGS...``: as ``python -m smtpkit``, and as ``main()`` in-process."""
    return run_subprocess if request.param == "subprocess" else run_inline
