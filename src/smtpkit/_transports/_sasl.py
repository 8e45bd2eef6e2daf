"""The SASL exchange of AUTH (RFC 4954), run on an open ``SMTPConnection``.

Our own loop instead of ``smtplib.SMTP.auth``: it encodes credentials as UTF-8
(smtplib insists on ASCII), never logs them, and bounds the challenges.  A
server may quote what it was sent in its reply ("535 bad AGFsaWNlAEh1bnRlcg==")
or the password itself: every reply of the exchange is logged and returned with
the credentials and each response sent (as sent in base64, and decoded) hidden,
also where the server split them across the lines of a multiline reply, and so
is every error quoting a malformed reply line (see ``SMTPConnection``).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Final

from .._auth import Auth, Responder, auth_secrets, run_auth_code
from .._exceptions import ProtocolError
from .._redaction import SecretForms
from .._reply import SMTPReply
from ._connection import SMTPConnection

__all__ = ["login_refused", "sasl_exchange"]

_MAX_SASL_CHALLENGES: Final = 8
_MIN_HIDDEN: Final = 4  # bytes: a shorter SASL response hides nothing
_BEARER: Final = b"auth=Bearer "


def sasl_exchange(conn: SMTPConnection, auth: Auth) -> SMTPReply:
    """Run one AUTH exchange with *auth* and return the server's final reply.

    Raises:
        ProtocolError: A challenge was not base64, or there were more than 8.
    """
    respond = _guarded(auth)
    shown = _Hidden(auth)
    initial = respond(None)
    args = auth.mechanism
    if initial is not None:
        args = f"{auth.mechanism} {_b64(initial)}"
        shown.add(initial)
    conn.putcmd("AUTH", args)
    try:
        conn.reply_forms = shown.forms
        reply = conn.read_reply()
        for _ in range(_MAX_SASL_CHALLENGES):
            if reply.code != 334:
                return shown.redact(reply)
            try:
                challenge = base64.b64decode(reply.text.encode("ascii"), validate=True)
            except (ValueError, UnicodeEncodeError) as exc:
                conn.send_secret("*")  # RFC 4954 §4: cancel the exchange
                conn.read_reply()
                msg = "server sent a SASL challenge that is not base64"
                raise ProtocolError(msg, command="AUTH") from exc
            # An empty answer is an empty line here; "=" only stands for an empty
            # initial response on the AUTH line itself (RFC 4954 §4).
            answer = respond(challenge) or b""
            shown.add(answer)
            conn.reply_forms = shown.forms
            conn.send_secret(base64.b64encode(answer).decode("ascii"))
            reply = conn.read_reply()
    finally:
        conn.reply_forms = None
    msg = f"server sent more than {_MAX_SASL_CHALLENGES} SASL challenges"
    raise ProtocolError(msg, command="AUTH")


def login_refused(auth: Auth) -> None:
    """Tell *auth* the server refused its login (535), its errors made typed.

    ``Auth.login_refused`` is the caller's code, guarded like its responder.
    """
    source = f"{type(auth).__name__} ({auth.mechanism})"
    run_auth_code(source, auth.login_refused, secrets=auth_secrets(auth))


class _Hidden:
    """What the replies of one exchange must not show: the credentials as sent.

    The secrets *auth* holds, and each response except the bare user name
    (LOGIN's first answer): PLAIN's ``\\0user\\0password``, LOGIN's password,
    XOAUTH2's ``user=...\\x01auth=Bearer <token>`` with a provider's token, in
    base64 as they went out and as the bytes they encode.
    """

    __slots__ = ("_secrets", "_username", "forms")

    def __init__(self, auth: Auth) -> None:
        self._secrets = list(auth_secrets(auth))
        username = getattr(auth, "username", None)
        self._username = username.encode() if isinstance(username, str) else None
        self.forms = SecretForms(self._secrets)

    def add(self, response: bytes) -> None:
        """Hide *response* from now on, unless it is the user name or too short.

        Shorter than ``_MIN_HIDDEN`` it is a protocol token (OAUTHBEARER's lone
        ``\\x01``), whose base64 (``AQ==``) would be hidden in every reply.
        """
        if len(response) < _MIN_HIDDEN or response == self._username:
            return
        self._secrets += [
            base64.b64encode(response).decode("ascii"),
            response.decode("utf-8", "surrogateescape"),
        ]
        # A bearer token on its own (XOAUTH2, OAUTHBEARER: "auth=Bearer <token>").
        for field in response.split(b"\x01"):
            if field.startswith(_BEARER):
                self._secrets.append(
                    field[len(_BEARER) :].decode("utf-8", "surrogateescape")
                )
        self.forms = SecretForms(self._secrets)

    def redact(self, reply: SMTPReply) -> SMTPReply:
        """*reply* with its text redacted, a secret split across its lines too."""
        text = self.forms.redact_lines(reply.text)
        return reply if text == reply.text else dataclasses.replace(reply, text=text)


def _guarded(auth: Auth) -> Responder:
    """*auth*'s responder, whose own errors name the strategy, not the session.

    A custom ``Auth`` (or a token provider behind one) is the caller's code:
    without this its ValueError would read as "EHLO failed" and its
    ConnectionError as a lost connection, retried.  smtpkit errors pass through,
    and neither credentials that cannot be encoded nor the secrets *auth* holds
    are quoted (see ``run_auth_code``).
    """
    source = f"{type(auth).__name__} ({auth.mechanism})"
    secrets = auth_secrets(auth)
    respond = run_auth_code(source, auth.responder, secrets=secrets)

    def guarded(challenge: bytes | None) -> bytes | None:
        return run_auth_code(source, lambda: respond(challenge), secrets=secrets)

    return guarded


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii") or "="
