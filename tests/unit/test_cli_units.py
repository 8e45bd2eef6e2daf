"""The CLI's pure parts: exit codes per error, the URL shown back, redaction."""

from __future__ import annotations

import io

import pytest

from smtpkit import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    DataRefusedError,
    GreetingRefusedError,
    NotSupportedError,
    ProtocolError,
    ReadTimeoutError,
    SMTPReply,
    TLSError,
)
from smtpkit._cli._exit import ExitCode, UsageError, exit_code_for
from smtpkit._cli._output import Output
from smtpkit._cli._server import shown_url


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("no URL"), ExitCode.CONFIG),
        (ConfigurationError("bad"), ExitCode.CONFIG),
        (AuthenticationError(SMTPReply(535, "no")), ExitCode.AUTH),
        (NotSupportedError("no common mechanism", command="AUTH"), ExitCode.AUTH),
        (NotSupportedError("no STARTTLS", command="STARTTLS"), ExitCode.CONNECT),
        (NotSupportedError("no SMTPUTF8", command="MAIL"), ExitCode.FAILED),
        (NotSupportedError("unknown"), ExitCode.FAILED),
        (ConnectError("refused"), ExitCode.CONNECT),
        (ReadTimeoutError("slow"), ExitCode.CONNECT),
        (TLSError("bad certificate"), ExitCode.CONNECT),
        (GreetingRefusedError(SMTPReply(554, "go away")), ExitCode.CONNECT),
        (ProtocolError("garbage"), ExitCode.FAILED),
        (DataRefusedError(SMTPReply(554, "spam")), ExitCode.FAILED),
    ],
)
def test_exit_code_for(error, code):
    assert exit_code_for(error) is code


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtp://h", "smtp://h"),
        ("smtps://u%40x.org:p%3Aw@h:465", "smtps://u%40x.org:***@h:465"),
        ("smtp://u@h", "smtp://u@h"),
        ("smtp://[::1]:25?tls=none", "smtp://[::1]:25?tls=none"),
        ("smtp://h?username=u&password=secret&timeout=5",
         "smtp://h?username=***&password=***&timeout=5"),
    ],
)  # fmt: skip
def test_shown_url_hides_passwords(url, shown):
    assert shown_url(url) == shown


def test_output_hides_every_form_but_not_short_passwords():
    stdout, stderr = io.StringIO(), io.StringIO()
    output = Output(stdout, stderr)
    output.hide(None, "abc", 'pa ss"word')
    output.out('a: pa ss"word, b: pa%20ss%22word, c: pa ss\\"word, abc')
    output.err("pa+ss%22word")
    assert stdout.getvalue() == "a: ***, b: ***, c: ***, abc\n"
    assert stderr.getvalue() == "***\n"
    assert not output.is_tty
