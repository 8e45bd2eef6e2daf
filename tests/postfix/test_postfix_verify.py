"""``Mailer.verify()`` against a real Postfix: what it reports, what Postfix saw.

Postfix's ``disconnect from`` line counts the session's commands: a verify
session has EHLO, STARTTLS, AUTH and QUIT, and no MAIL.
"""

from __future__ import annotations

import re

import pytest
import trustme

from smtpkit import AuthenticationError, Mailer, TLSError
from smtpkit.auth import PlainAuth

from .mta import MTA_HOSTNAME, TEST_USERS

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

ALICE = "alice@example.com"
GOOD = PlainAuth(ALICE, TEST_USERS[ALICE])


def _summary(postfix, mark: int) -> str:
    log = postfix.wait_for_log("disconnect from", since=mark)
    [line] = [x for x in log.splitlines() if "disconnect from" in x]
    return line


def test_submission_verify_reports_postfix_and_sends_nothing(postfix):
    mark = postfix.log_offset()
    report = Mailer(postfix.config("submission", auth=GOOD)).verify()
    assert report.banner.startswith(MTA_HOSTNAME)
    assert "Postfix" in report.banner
    assert report.starttls_used
    assert report.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert report.certificate_subject is not None
    assert report.certificate_expires is not None
    assert report.auth_mechanism == "PLAIN"
    assert report.pipelining
    assert report.chunking
    assert report.smtputf8
    assert report.size_limit is not None
    assert report.size_limit > 0
    assert [step for step, _ in report.timings] == [
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "ehlo after tls",
        "auth",
        "quit",
    ]
    summary = _summary(postfix, mark)
    assert re.search(r" ehlo=2 starttls=1 auth=1 quit=1 commands=5$", summary), summary
    assert " mail=" not in summary


def test_smtps_verify_uses_implicit_tls(postfix):
    mark = postfix.log_offset()
    report = Mailer(postfix.config("smtps", auth=GOOD)).verify()
    assert not report.starttls_used
    assert report.tls_version is not None
    assert report.auth_mechanism == "PLAIN"
    summary = _summary(postfix, mark)
    assert " ehlo=1 auth=1 quit=1 " in summary


def test_small_endpoint_reports_its_size_limit(postfix):
    report = Mailer(postfix.config("small")).verify()
    assert report.size_limit == 20000
    assert report.auth_mechanism is None
    assert report.tls_version is None


def test_wrong_password_is_an_actionable_authentication_error(postfix):
    mark = postfix.log_offset()
    config = postfix.config("submission", auth=PlainAuth(ALICE, "wrong password"))
    with pytest.raises(AuthenticationError) as info:
        Mailer(config).verify()
    assert info.value.reply.code == 535
    assert "check the username and password" in str(info.value)
    assert "wrong password" not in str(info.value)
    summary = _summary(postfix, mark)
    assert " auth=0/1 quit=1 " in summary


def test_untrusted_certificate_is_a_tls_error(postfix, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(TLSError):
        Mailer(postfix.config("submission", auth=GOOD, ca_file=str(other))).verify()
