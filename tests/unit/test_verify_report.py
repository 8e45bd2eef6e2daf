"""``VerifyReport`` as a value, the transports' ``verify()`` without a server,
and the report parts that need no socket (SIZE parsing, timings)."""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone

import pytest

from smtpkit import (
    AuthenticationError,
    ClosedError,
    Mailer,
    NotSupportedError,
    SMTPReply,
    TLSMode,
    Transport,
    VerifyReport,
)
from smtpkit._transports._hints import Endpoint, auth_refused_message
from smtpkit._transports._verify import _certificate, _size_limit, durations
from smtpkit._verify_report import VERIFY_STEPS
from smtpkit.testing import ConsoleTransport, FakeTransport, FileTransport

EXPIRES = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)

FULL = VerifyReport(
    host="mail.example.com",
    port=587,
    banner="mail.example.com ESMTP Postfix",
    extensions={"size": "10240000", "pipelining": "", "auth": "PLAIN LOGIN"},
    size_limit=10240000,
    pipelining=True,
    starttls_used=True,
    tls_version="TLSv1.3",
    cipher="TLS_AES_256_GCM_SHA384",
    certificate_subject="CN=mail.example.com",
    certificate_expires=EXPIRES,
    auth_mechanism="PLAIN",
    timings=(("connect", 0.010), ("greeting", 0.0205), ("quit", 0.001)),
)


def test_as_dict_is_json_safe_and_complete():
    data = FULL.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["certificate_expires"] == "2031-05-06T07:08:09+00:00"
    assert data["timings"] == {"connect": 0.010, "greeting": 0.0205, "quit": 0.001}
    assert list(data["timings"]) == ["connect", "greeting", "quit"]  # type: ignore[call-overload]
    fields = set(VerifyReport.__dataclass_fields__)
    assert set(data) == fields


def test_as_dict_copies_the_extensions():
    data = FULL.as_dict()
    data["extensions"]["size"] = "1"  # type: ignore[index]
    assert FULL.extensions["size"] == "10240000"


def test_str_has_one_fact_per_line():
    lines = str(FULL).splitlines()
    assert lines[0] == "server: mail.example.com:587"
    assert "banner: mail.example.com ESMTP Postfix" in lines
    assert "TLS: TLSv1.3 (STARTTLS), cipher TLS_AES_256_GCM_SHA384" in lines
    assert "certificate: CN=mail.example.com" in lines
    assert "certificate expires: 2031-05-06T07:08:09+00:00" in lines
    assert "login: PLAIN" in lines
    assert "size limit: 10240000 bytes" in lines
    assert "pipelining: yes" in lines
    assert "chunking: no" in lines
    assert "extensions: AUTH PLAIN LOGIN, PIPELINING, SIZE 10240000" in lines
    assert "time greeting: 20.5 ms" in lines
    assert all(": " in line for line in lines)


def test_str_of_a_bare_session():
    bare = VerifyReport(host="::1", port=25, banner="")
    text = str(bare)
    assert "server: [::1]:25" in text
    assert "banner: (empty)" in text
    assert "TLS: none" in text
    assert "login: none" in text
    assert "size limit: none" in text
    assert "extensions: none (HELO)" in text
    assert "certificate" not in text
    assert bare.total_time == 0


def test_report_is_frozen():
    with pytest.raises(AttributeError):
        FULL.port = 25  # type: ignore[misc]


@pytest.mark.parametrize(
    ("param", "limit"),
    [
        (None, None),
        ("", None),
        ("0", None),  # RFC 1870 §4: no fixed maximum
        ("35882577", 35882577),
        (" 1000 ", 1000),
        ("10M", None),
        ("-5", None),
        ("١٢٣", None),  # Arabic-Indic digits: isdigit() but not a SIZE
    ],
)
def test_size_limit_parsing(param, limit):
    assert _size_limit(param) == limit


def test_durations_are_differences_and_never_negative():
    assert durations(1.0, [("connect", 1.5), ("greeting", 1.75), ("ehlo", 1.7)]) == (
        ("connect", 0.5),
        ("greeting", 0.25),
        ("ehlo", 0.0),
    )


def test_fake_transport_verify_is_plausible_and_counted():
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        report = mailer.verify()
        mailer.verify()
    assert fake.verifications == 2
    assert report.size_limit == int(report.extensions["size"])
    assert report.pipelining
    assert report.chunking
    assert report.smtputf8
    assert [step for step, _ in report.timings] == list(VERIFY_STEPS)
    assert fake.outbox == []
    assert fake.attempts == []
    with pytest.raises(ClosedError):
        fake.verify()


def test_mailer_verify_after_close_is_closed_error():
    mailer = Mailer(transport=FakeTransport())
    mailer.close()
    with pytest.raises(ClosedError, match="closed"):
        mailer.verify()


def test_mailer_verify_does_not_open_the_mailer():
    mailer = Mailer(transport=FakeTransport())
    mailer.verify()
    assert repr(mailer).endswith("unopened>")


@pytest.mark.parametrize(
    "transport",
    [FileTransport("unused-dir"), ConsoleTransport()],
    ids=["file", "console"],
)
def test_transports_without_a_server_refuse_clearly(transport: Transport):
    with pytest.raises(NotSupportedError) as info:
        Mailer(transport=transport).verify()
    text = str(info.value)
    assert type(transport).__name__ in text
    assert "SMTPTransport" in text
    assert info.value.command == "verify"
    assert not info.value.is_transient


# -- the parts of a report that need no socket ---------------------------------------


class FakeTLSSocket:
    def __init__(self, cert=None, error: Exception | None = None) -> None:
        self.cert = cert
        self.error = error

    def getpeercert(self):
        if self.error is not None:
            raise self.error
        return self.cert


@pytest.mark.parametrize(
    ("sock", "expected"),
    [
        (FakeTLSSocket(error=ValueError("not connected")), (None, None)),
        (FakeTLSSocket(cert={}), (None, None)),  # CERT_NONE: nothing decoded
        (
            FakeTLSSocket(
                cert={
                    "subject": (
                        (("countryName", "DE"),),
                        (("organizationName", "Example"),),
                        (("commonName", "mail.example.com"),),
                        (("businessCategory", "x"),),
                    ),
                    "notAfter": "May  6 07:08:09 2031 GMT",
                }
            ),
            ("C=DE, O=Example, CN=mail.example.com, businessCategory=x", EXPIRES),
        ),
        (FakeTLSSocket(cert={"notAfter": "next year"}), (None, None)),
        (FakeTLSSocket(cert={"subject": "odd", "notAfter": 5}), (None, None)),
    ],
    ids=["error", "unverified", "full", "bad-date", "odd-shapes"],
)
def test_certificate_facts(sock, expected):
    assert _certificate(sock) == expected


@pytest.mark.parametrize(
    ("reply", "advice"),
    [
        ("535 5.7.8 Authentication credentials invalid", "check the username"),
        ("454 4.7.0 Temporary authentication failure", "try later"),
        ("534 5.7.9 Authentication mechanism is too weak", None),
    ],
)
def test_auth_refusal_advice(reply, advice):
    endpoint = Endpoint("mail.example.com", 587, TLSMode.STARTTLS, 30.0, None)
    text = auth_refused_message(SMTPReply.from_string(reply), "PLAIN", endpoint)
    assert text.startswith(
        f"mail.example.com:587 (tls=starttls) refused the login (AUTH PLAIN): {reply}"
    )
    if advice is None:
        assert text.endswith(reply)
    else:
        assert advice in text


def test_auth_refusal_of_a_known_provider_leaves_the_hint_to_the_error():
    reply = SMTPReply.from_string(
        "535 Login Fail. Please enter your authorization code to login. More "
        "information in https://service.mail.qq.com/detail/0/53"
    )
    endpoint = Endpoint("smtp.qq.com", 465, TLSMode.IMPLICIT, 30.0, None)
    text = auth_refused_message(reply, "LOGIN", endpoint)
    assert "check the username" not in text
    error = AuthenticationError(reply, command="AUTH", message=text)
    assert error.hint is not None
    assert str(error) == f"{text}; hint: {error.hint}"


# -- review fix-11a: one report per call, and a frozen report that stays so --------


def test_fake_verify_returns_a_fresh_report_each_call() -> None:
    transport = FakeTransport()
    first, second = transport.verify(), transport.verify()
    assert first is not second
    assert first == second
    with pytest.raises(TypeError):
        first.extensions["size"] = "1"  # type: ignore[index]  # read-only: the point
    assert second.extensions["size"] == "52428800"
    assert pickle.loads(pickle.dumps(first)) == first  # noqa: S301 - our own bytes


def test_report_extensions_are_a_read_only_copy() -> None:
    given = {"size": "100"}
    report = VerifyReport(host="h", port=25, banner="b", extensions=given)
    given["size"] = "1"
    assert report.extensions == {"size": "100"}
    with pytest.raises(TypeError):
        report.extensions["x"] = ""  # type: ignore[index]  # read-only: the point
    assert report.as_dict()["extensions"] == {"size": "100"}
    assert VerifyReport(host="h", port=25, banner="b").extensions == {}
