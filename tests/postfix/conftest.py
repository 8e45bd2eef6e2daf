"""Session fixtures: one private Postfix (+ Dovecot SASL) instance on 127.0.0.1.

The instance is started once per session (about 2 s) and shared by every test here;
tests keep apart by using unique recipient addresses (the ``address`` fixture) and
by reading only the part of the log written after they started.

When Postfix or Dovecot is missing or cannot start, the tests are skipped with the
reason, except under CI (the ``CI`` environment variable is set), where the fixture
fails so that a broken setup cannot pass silently.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator

import pytest
import trustme

from ..mailers import mailer_kind, make_mailer
from ..services import service_unavailable
from .mta import MTAUnavailableError, PostfixInstance, mta_unavailable_reason

# Fixtures: every test asking for make_mailer runs for Mailer and AsyncMailer.
__all__ = ["mailer_kind", "make_mailer"]

AddressFactory = Callable[..., str]


@pytest.fixture(scope="session")
def postfix_ca() -> trustme.CA:
    """The throw-away CA that signs the Postfix server certificate."""
    return trustme.CA()


@pytest.fixture(scope="session")
def postfix(postfix_ca: trustme.CA) -> Iterator[PostfixInstance]:
    """A running Postfix with the endpoints of ``mta.DEFAULT_ENDPOINTS``.

    Its directory is a fresh ``/tmp/smtpkit-postfix-*`` rather than pytest's
    ``tmp_path`` (which is mode 0700): Postfix's unprivileged daemons and the
    delivery pipe must be able to reach it.  Stopped and removed at session end,
    and checked to leave no process behind.
    """
    reason = mta_unavailable_reason()
    if reason is not None:
        service_unavailable("private Postfix instance", reason)
    mta = PostfixInstance(ca=postfix_ca)
    try:
        mta.start()
    except MTAUnavailableError as exc:
        service_unavailable("private Postfix instance", exc)
    try:
        yield mta
    finally:
        directory = str(mta.directory)
        mta.stop()
    pgrep = subprocess.run(
        ["pgrep", "-f", directory], capture_output=True, text=True, check=False
    )
    assert pgrep.returncode == 1, f"processes left behind: {pgrep.stdout}"
    assert mta.processes() == []
    assert not os.path.exists(directory)


_LOG_MARK = pytest.StashKey[tuple[PostfixInstance, int]]()


@pytest.fixture(autouse=True)
def _postfix_log_mark(
    request: pytest.FixtureRequest, postfix: PostfixInstance
) -> Iterator[None]:
    """Check that no test pipelines improperly; keep the log mark for reports.

    smtpd_forbid_unauth_pipelining=yes on every endpoint makes Postfix log and
    hang up on a client that sends ahead where RFC 2920 forbids it (during
    STARTTLS, AUTH, DATA...), so every test here doubles as a pipelining check.
    """
    mark = postfix.log_offset()
    request.node.stash[_LOG_MARK] = (postfix, mark)
    yield
    if "improper_pipelining_expected" not in request.fixturenames:
        assert "improper command pipelining" not in postfix.log(mark)


@pytest.fixture
def improper_pipelining_expected() -> None:
    """Request this in a test that pipelines improperly on purpose."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the Postfix log lines written during a failed test to its report."""
    report = yield
    if report.when == "call" and report.failed and _LOG_MARK in item.stash:
        postfix, mark = item.stash[_LOG_MARK]
        report.sections.append(("Captured postfix.log", postfix.log(mark)))
    return report


@pytest.fixture
def address() -> AddressFactory:
    """Make unique addresses: ``address("busy")`` -> ``busy-1a2b3c4d@example.net``."""

    def make(local: str = "rcpt", domain: str = "example.net") -> str:
        return f"{local}-{uuid.uuid4().hex[:8]}@{domain}"

    return make
