"""Every row of the provider reply table, replayed by a real server at its step.

The test is parametrised over the table itself: a new row gets a server that
emits its documented ``example`` at its ``step`` without any further code, and
the error ``Mailer.send`` raises must carry the row's reason and hint, with the
hint at the end of its message.
"""

from __future__ import annotations

import pytest

from smtpkit import (
    AuthenticationError,
    DataRefusedError,
    GreetingRefusedError,
    Mailer,
    Message,
    RecipientsRefusedError,
    ReplyReason,
    RetryPolicy,
    SenderRefusedError,
    SMTPConfig,
    SMTPReplyError,
)
from smtpkit._provider_replies import _RULES
from smtpkit._reply_reasons import Rule as _Rule

from .rawserver import RawConn, RawServer

pytestmark = pytest.mark.integration

# The error each step's refusal becomes.
ERROR_FOR_STEP: dict[str, type[SMTPReplyError]] = {
    "connect": GreetingRefusedError,
    "AUTH": AuthenticationError,
    "MAIL": SenderRefusedError,
    "RCPT": RecipientsRefusedError,
    "end of data": DataRefusedError,
}


def on_the_wire(example: str) -> bytes:
    """The documented reply as the provider's server sends it: CRLF lines."""
    return "".join(f"{line}\r\n" for line in example.split("\n")).encode()


class ProviderServer:
    """Correct SMTP with AUTH PLAIN that answers one step with the row's reply."""

    def __init__(self, rule: _Rule) -> None:
        self.step = rule.step
        self.reply = on_the_wire(rule.example)
        self.closes = rule.example.startswith("421")  # RFC 5321 §3.8: 421 ends it

    def answer(self, conn: RawConn, step: str, ok: bytes) -> bool:
        """Send the row's reply at its step, *ok* otherwise; False to hang up."""
        conn.send(self.reply if step == self.step else ok)
        return not (step == self.step and self.closes)

    def __call__(self, conn: RawConn) -> None:
        if not self.answer(conn, "connect", b"220 mx.example.com ESMTP\r\n"):
            return
        while line := conn.readline():
            verb = line[:4].decode("ascii", "replace").upper()
            if verb == "EHLO":
                keep = self.answer(
                    conn, "EHLO", b"250-mx.example.com\r\n250 AUTH PLAIN\r\n"
                )
            elif verb == "AUTH":
                keep = self.answer(conn, "AUTH", b"235 2.7.0 ok\r\n")
            elif verb == "MAIL":
                keep = self.answer(conn, "MAIL", b"250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                keep = self.answer(conn, "RCPT", b"250 2.1.5 ok\r\n")
            elif verb == "DATA":
                conn.send(b"354 go ahead\r\n")
                if conn.read_data() is None:
                    return
                keep = self.answer(conn, "end of data", b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                conn.send(b"221 2.0.0 bye\r\n")
                return
            else:  # RSET, NOOP
                keep = self.answer(conn, verb, b"250 2.0.0 ok\r\n")
            if not keep:
                return


@pytest.mark.parametrize("rule", _RULES, ids=lambda r: f"{r.provider}:{r.example[:24]}")
def test_send_raises_the_rows_reason_and_hint(rule: _Rule) -> None:
    assert rule.step in ERROR_FOR_STEP, "a new step needs a line in ProviderServer"
    with RawServer(ProviderServer(rule)) as server:
        config = SMTPConfig(
            host=server.host,
            port=server.port,
            tls="none",
            timeout=3.0,
            username="me@example.com",
            password="app-secret-123",
            allow_insecure_auth=True,
        )
        with Mailer(config, retry=RetryPolicy.never()) as mailer:
            message = Message(sender="me@example.com", to="you@example.com", text="hi")
            with pytest.raises(SMTPReplyError) as caught:
                mailer.send(message)
    error = caught.value
    assert isinstance(error, ERROR_FOR_STEP[rule.step])
    assert error.reply.code == int(rule.example[:3])
    assert error.reason is rule.reason
    assert error.hint == rule.hint
    assert str(error).endswith(f"; hint: {rule.hint}")
    assert error.explanation is not None
    assert error.explanation.doc_url == rule.doc_url
    assert error.explanation.retry_after == rule.retry_after
    assert "app-secret-123" not in str(error)


def test_partly_refused_recipients_carry_reason_and_hint() -> None:
    """One recipient refused with a documented reply: the result says why."""
    refusal = b"452 4.5.3 Error: too many recipients\r\n"

    def script(conn: RawConn) -> None:
        conn.send(b"220 mx ESMTP\r\n")
        recipients = 0
        while line := conn.readline():
            verb = line[:4].decode().upper()
            if verb == "RCPT":
                recipients += 1
                conn.send(refusal if recipients > 1 else b"250 2.1.5 ok\r\n")
            elif verb == "DATA":
                conn.send(b"354 go\r\n")
                conn.read_data()
                conn.send(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:
                conn.send(b"250 ok\r\n")

    with RawServer(script) as server:
        config = SMTPConfig(host=server.host, port=server.port, tls="none", timeout=3.0)
        with Mailer(config, retry=RetryPolicy.never()) as mailer:
            result = mailer.send(
                Message(
                    sender="me@example.com",
                    to=["a@example.com", "b@example.com"],
                    text="hi",
                )
            )
    assert result.accepted == ("a@example.com",)
    refused = result.recipients["b@example.com"]
    assert refused.reason is not None
    assert refused.reason.value == "too_many_recipients"
    assert refused.hint is not None
    assert refused.explanation is not None
    assert refused.explanation.provider == "Postfix"
    assert result.refused == {"b@example.com": refused.reply}  # replies only
    assert result.recipients["a@example.com"].reason is None


def test_all_refused_explains_the_first_documented_refusal() -> None:
    """An undocumented refusal first: the error still says what NetEase means."""
    replies = [
        b"550 User not found: gone@163.com\r\n",
        b"451 RP:QRC 163 smtp7,C8CowAAnpFyamC9fa52cAg--.56912S2 1596954778\r\n",
    ]

    def script(conn: RawConn) -> None:
        conn.send(b"220 mx ESMTP\r\n")
        while line := conn.readline():
            verb = line[:4].decode().upper()
            if verb == "RCPT":
                conn.send(replies.pop(0))
            elif verb == "QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:  # EHLO, MAIL, RSET
                conn.send(b"250 ok\r\n")

    with RawServer(script) as server:
        config = SMTPConfig(host=server.host, port=server.port, tls="none", timeout=3.0)
        with Mailer(config, retry=RetryPolicy.never()) as mailer:
            message = Message(
                sender="me@163.com", to=["gone@163.com", "b@163.com"], text="hi"
            )
            with pytest.raises(RecipientsRefusedError) as caught:
                mailer.send(message)
    error = caught.value
    assert error.reason is ReplyReason.QUOTA_EXCEEDED
    assert error.reply.code == 550  # the first recipient's reply
    assert str(error).endswith(f"; hint (for <b@163.com>): {error.hint}")
    assert error.is_transient  # a 4xx among the refusals...
    assert not RetryPolicy().should_retry(error)  # ...but a spent quota is not retried
