"""A server that quotes the AUTH response in its 535 must not leak the password.

The reviewer's finding: "535 5.7.8 bad AGFsaWNlAEh1bnRlcjJzZWNyZXQ=" is PLAIN's
``\\0alice\\0Hunter2secret`` in base64, and went into the AuthenticationError,
the DEBUG log and the CLI's stderr.  Every reply of the exchange is now shown
with the credentials hidden as they were sent: base64 and decoded, PLAIN's
whole response, LOGIN's password, an XOAUTH2 token from a provider.
"""

from __future__ import annotations

import base64
import logging
import pickle
from collections.abc import Callable

import pytest

from smtpkit import AuthenticationError, Mailer, SMTPConfig, SMTPKitError
from smtpkit.auth import Auth, LoginAuth, PlainAuth, XOAuth2Auth

from .clirunner import run_subprocess
from .rawserver import RawConn, RawServer

pytestmark = pytest.mark.integration

USER = "alice"
PASSWORD = "Hunter2secret"
TOKEN = "ya29.provider-token-0123456789"
LEAKS = [
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    TOKEN,
    base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()).decode(),
]


def refused_verify(
    script: Callable[[RawConn], None], auth: Auth, error_type: type[SMTPKitError]
) -> tuple[SMTPKitError, RawServer]:
    """Run ``verify()`` with *auth* against a raw *script* server; its error."""
    with RawServer(script) as server:
        config = SMTPConfig(
            host=server.host,
            port=server.port,
            tls="none",
            allow_insecure_auth=True,
            auth=[auth],
            timeout=5,
        )
        with pytest.raises(error_type) as info, Mailer(config) as mailer:
            mailer.verify()
    return info.value, server


def every_form(error: SMTPKitError) -> list[str]:
    """Every text of *error* a program might show or store."""
    return [
        str(error),
        repr(error),
        repr(vars(error)),
        pickle.dumps(error).decode("latin-1"),
    ]


def echo_server(mechanism: str):
    """Greet, offer *mechanism*, and quote whatever the client sent in a 535."""

    def script(conn: RawConn) -> None:
        conn.send(b"220 hi\r\n")
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.send(f"250-x\r\n250 AUTH {mechanism}\r\n".encode())
            elif verb == b"AUTH" and mechanism == "LOGIN":
                conn.send(b"334 VXNlcm5hbWU6\r\n")
                conn.readline()
                conn.send(b"334 UGFzc3dvcmQ6\r\n")
                answer = conn.readline().strip()
                decoded = base64.b64decode(answer)
                conn.send(
                    b"535-5.7.8 bad " + answer + b"\r\n535 5.7.8 " + decoded + b"\r\n"
                )
            elif verb == b"AUTH":
                sent = line.split()[2]
                conn.send(
                    b"535-5.7.8 bad "
                    + sent
                    + b"\r\n535 5.7.8 "
                    + base64.b64decode(sent)
                    + b"\r\n"
                )
            elif verb == b"QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:
                conn.send(b"250 ok\r\n")

    return script


@pytest.mark.parametrize(
    ("mechanism", "auth"),
    [
        ("PLAIN", PlainAuth(USER, PASSWORD)),
        ("LOGIN", LoginAuth(USER, PASSWORD)),
        ("XOAUTH2", XOAuth2Auth(USER, token_provider=lambda: TOKEN)),
    ],
)
def test_an_echoed_response_is_hidden_in_the_error_and_the_log(
    mechanism, auth, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    error, server = refused_verify(echo_server(mechanism), auth, AuthenticationError)
    assert isinstance(error, AuthenticationError)
    shown = [*every_form(error), str(error.reply)]
    log = caplog.text
    assert "535" in log
    assert "***" in str(error)
    for leak in LEAKS:
        assert all(leak not in text for text in shown), leak
        assert leak not in log, leak
    assert server.errors == []


def test_the_cli_shows_no_echoed_response() -> None:
    with RawServer(echo_server("PLAIN")) as server:
        url = (
            f"smtp://{USER}:{PASSWORD}@{server.host}:{server.port}"
            "?tls=none&allow_insecure_auth=true&timeout=5"
        )
        run = run_subprocess(["check", url, "--json"])
    assert run.code == 4
    assert "535" in run.both
    for leak in LEAKS:
        assert leak not in run.both, leak
