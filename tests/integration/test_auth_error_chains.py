"""A custom Auth or token provider whose error would show a secret, through Mailer.

Before the fix only a UnicodeError raised directly lost its chain.  One reached
as ``__cause__``/``__context__`` or inside an ExceptionGroup kept the SASL payload
(its ``object``) in the chain of the ``TransportError``, and an error quoting
the Auth's password (``int(password)``) showed it in the message, the pickle
and the traceback.  Against ``auth_server`` (aiosmtpd, STARTTLS, then AUTH).
"""

from __future__ import annotations

import pickle
import sys
import traceback

import pytest
from pydantic import SecretStr
from typing_extensions import override

from smtpkit import Mailer, Message, SMTPConfig, TransportError
from smtpkit.auth import Auth, Responder, XOAuth2Auth

from ..chains import linked
from .scripted import wiretap

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover - the backport pytest itself depends on before 3.11
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.integration

MESSAGE = Message(sender="a@example.com", to="b@example.com", subject="s", text="x")
SECRET = "hunter2-\u00dfecret"


def assert_hidden(error: BaseException) -> None:
    assert error.__cause__ is None
    assert error.__context__ is None
    report = "".join(traceback.format_exception(error))
    for link in linked(error):
        for text in (str(link), repr(link), repr(vars(link)), report):
            assert SECRET not in text
            assert "\\xdf" not in text
        assert SECRET.encode() not in pickle.dumps(link)


def send(config: SMTPConfig) -> None:
    with Mailer(config, sleep=lambda seconds: None) as mailer:
        mailer.send(MESSAGE)


class VaultAuth(Auth):
    """A custom PLAIN whose encoder fails in one of several ways."""

    mechanism = "PLAIN"

    def __init__(self, how: str) -> None:
        self.password = SecretStr(SECRET)
        self.how = how

    @override
    def responder(self) -> Responder:
        password = self.password.get_secret_value()

        def respond(challenge: bytes | None) -> bytes | None:
            if self.how == "int":
                return str(int(password)).encode()  # quotes the password
            try:
                return f"\0u\0{password}".encode("ascii")
            except UnicodeError as exc:
                msg = "password must be ASCII"
                if self.how == "cause":
                    raise ValueError(msg) from exc
                raise ExceptionGroup(msg, [exc]) from None

        return respond


CASES = {
    "int": "ValueError: invalid literal for int() with base 10: '***'",
    "cause": "ValueError: password must be ASCII",
    "group": "ExceptionGroup: password must be ASCII (1 sub-exception)",
}


@pytest.mark.parametrize("how", CASES)
def test_a_custom_auth_error_that_would_show_the_password_shows_nothing(
    auth_server, submission, how
):
    log = wiretap(auth_server)
    with pytest.raises(TransportError) as info:
        send(submission(VaultAuth(how)))
    error = info.value
    assert str(error) == f"VaultAuth (PLAIN) raised {CASES[how]}"
    assert type(error) is TransportError
    assert error.command == "AUTH"
    assert error.attempts == 1
    assert_hidden(error)
    assert "STARTTLS" in log
    assert not any(line.startswith("AUTH") for line in log)
    assert auth_server.messages == []


def test_a_provider_error_with_a_unicode_error_in_its_context_shows_nothing(
    auth_server, submission
):
    def provider() -> str:
        try:
            return SECRET.encode("ascii").decode()
        except UnicodeError:
            msg = "token service returned a token that is not ASCII"
            raise RuntimeError(msg)  # noqa: B904 - the implicit __context__ is the point

    with pytest.raises(TransportError) as info:
        send(submission(XOAuth2Auth("u@example.com", token_provider=provider)))
    assert str(info.value) == (
        "XOAUTH2 token_provider raised RuntimeError: token service returned a token "
        "that is not ASCII"
    )
    assert info.value.attempts == 1
    assert_hidden(info.value)
