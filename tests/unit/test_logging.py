"""Logging etiquette: nothing on stderr unless the application configures logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from smtpkit import Mailer, Message
from smtpkit.testing import FakeTransport, no_wait

_SEND_WITH_A_RETRY = textwrap.dedent(
    """
    import logging
    import sys

    from smtpkit import Mailer, Message
    from smtpkit.testing import FakeTransport, no_wait

    if sys.argv[1:] == ["configured"]:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    fake = FakeTransport()
    fake.fail_next(1, "451 4.3.0 Try again later")
    with Mailer(transport=fake, retry=no_wait()) as mailer:
        mailer.send(Message(sender="a@example.com", to="b@example.com", text="hi"))
    print("sent")
    """
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SEND_WITH_A_RETRY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.mark.timeout(60)
def test_a_retry_warning_reaches_no_stderr_without_logging_configured() -> None:
    done = _run()
    assert done.stdout == "sent\n"
    assert done.stderr == ""


@pytest.mark.timeout(60)
def test_an_application_that_configures_logging_sees_the_records() -> None:
    done = _run("configured")
    assert "WARNING attempt 1 failed (DataRefusedError 451)" in done.stderr
    assert "INFO sent <" in done.stderr


def test_the_library_logger_has_only_a_null_handler() -> None:
    handlers = logging.getLogger("smtpkit").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_a_handler_added_by_the_application_still_gets_every_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    fake = FakeTransport()
    fake.fail_next(1, "451 4.3.0 Try again later")
    with Mailer(transport=fake, retry=no_wait()) as mailer:
        mailer.send(Message(sender="a@example.com", to="b@example.com", text="hi"))
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
