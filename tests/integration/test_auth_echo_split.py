"""Review C: a reply to AUTH that quotes the credentials in a form the reader
rejects, or split across its lines, must not show them either.

"535:bad <base64>" (malformed) and "535-bad" / "501 <base64>" (the code changes)
raised a ProtocolError quoting the raw line; "535-5.7.8 bad <12 chars>" /
"535 5.7.8 <the rest>" left the rest visible.  Checked in the error, its repr and
pickle, and the DEBUG log, for PLAIN and XOAUTH2 (whose response is one line).
"""

from __future__ import annotations

import base64
import logging

import pytest

from smtpkit import AuthenticationError, ProtocolError
from smtpkit.auth import PlainAuth, XOAuth2Auth

from .rawserver import RawConn
from .test_auth_echo import every_form, refused_verify

pytestmark = pytest.mark.integration

USER = "alice"
PASSWORD = "Hunter2secret"
TOKEN = "ya29.provider-token-0123456789"
PLAIN = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
XOAUTH2 = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode())
LEAKS = [PASSWORD, PLAIN, PLAIN[12:], TOKEN, XOAUTH2.decode(), XOAUTH2.decode()[40:]]


def _quote(kind: str, sent: bytes) -> bytes:
    decoded = base64.b64decode(sent)
    return {
        "malformed": b"535:bad " + sent + b"\r\n",
        "code-changes": b"535-bad\r\n501 " + sent + b"\r\n",
        "split": b"535-5.7.8 bad "
        + sent[:12]
        + b"\r\n535 5.7.8 "
        + sent[12:]
        + b"\r\n",
        "split-decoded": b"535-5.7.8 bad "
        + decoded[:9]
        + b"\r\n535 5.7.8 "
        + decoded[9:]
        + b"\r\n",
        "split-bare": b"535-"
        + sent[:10]
        + b"\r\n535-"
        + sent[10:20]
        + b"\r\n535 "
        + sent[20:]
        + b"\r\n",
    }[kind]


def quoting_server(kind: str):
    def script(conn: RawConn) -> None:
        conn.send(b"220 hi\r\n")
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.send(b"250-x\r\n250 AUTH PLAIN XOAUTH2\r\n")
            elif verb == b"AUTH":
                conn.send(_quote(kind, line.split()[2]))
            elif verb == b"QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:
                conn.send(b"250 ok\r\n")

    return script


@pytest.mark.parametrize(
    "auth",
    [PlainAuth(USER, PASSWORD), XOAuth2Auth(USER, token_provider=lambda: TOKEN)],
    ids=["PLAIN", "XOAUTH2"],
)
@pytest.mark.parametrize(
    ("kind", "error_type", "kept"),
    [
        ("malformed", ProtocolError, "malformed reply line: '535:bad ***'"),
        ("code-changes", ProtocolError, "multiline reply: '501 ***'"),
        ("split", AuthenticationError, "535 5.7.8 bad ***\n***"),
        ("split-decoded", AuthenticationError, "535 5.7.8 bad ***\n***"),
        ("split-bare", AuthenticationError, "535 ***\n***\n***"),
    ],
)
def test_a_quoted_response_is_hidden_however_the_reply_is_cut(
    auth, kind, error_type, kept, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="smtpkit")
    error, server = refused_verify(quoting_server(kind), auth, error_type)
    assert kept in str(error)  # the code and the server's words stay
    shown = [*every_form(error), caplog.text]
    for leak in LEAKS:
        assert all(leak not in text for text in shown), leak
    assert server.errors == []
