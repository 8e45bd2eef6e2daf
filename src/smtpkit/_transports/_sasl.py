"""The SASL exchange of AUTH (RFC 4954), run on an open ``SMTPConnection``.

Our own loop instead of ``smtplib.SMTP.auth``: it encodes credentials as UTF-8
(smtplib insists on ASCII), never logs them, and bounds the challenges.
"""

from __future__ import annotations

import base64
from typing import Final

from .._auth import Auth, Responder, auth_secrets, run_auth_code
from .._exceptions import ProtocolError
from .._reply import SMTPReply
from ._connection import SMTPConnection

__all__ = ["sasl_exchange"]

_MAX_SASL_CHALLENGES: Final = 8


def sasl_exchange(conn: SMTPConnection, auth: Auth) -> SMTPReply:
    """Run one AUTH exchange with *auth* and return the server's final reply.

    Raises:
        ProtocolError: A challenge was not base64, or there were more than 8.
    """
    respond = _guarded(auth)
    initial = respond(None)
    args = auth.mechanism if initial is None else f"{auth.mechanism} {_b64(initial)}"
    conn.putcmd("AUTH", args)
    reply = conn.read_reply()
    for _ in range(_MAX_SASL_CHALLENGES):
        if reply.code != 334:
            return reply
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
        conn.send_secret(base64.b64encode(answer).decode("ascii"))
        reply = conn.read_reply()
    msg = f"server sent more than {_MAX_SASL_CHALLENGES} SASL challenges"
    raise ProtocolError(msg, command="AUTH")


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
