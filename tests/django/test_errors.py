"""The backend's errors: every smtpkit error, also an ``smtplib.SMTPException``."""

from __future__ import annotations

import inspect
import pickle
import smtplib

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from django.test.utils import override_settings

import smtpkit
from smtpkit.contrib.django import SMTPKIT_RESULT, EmailBackend
from smtpkit.contrib.django._errors import as_django_error

from . import modes

pytestmark = modes.LEGACY

PUBLIC_ERRORS = sorted(
    (
        value
        for value in vars(smtpkit).values()
        if isinstance(value, type) and issubclass(value, smtpkit.SMTPKitError)
    ),
    key=lambda cls: cls.__name__,
)
REPLY = smtpkit.SMTPReply(550, "5.7.1 refused")


def sample(cls: type[smtpkit.SMTPKitError]) -> smtpkit.SMTPKitError:
    """An instance of *cls* made through its own constructor."""
    values = {
        "message": f"{cls.__name__} happened",
        "reply": REPLY,
        "refused": {"x@example.com": REPLY},
        "sender": "a@example.com",
        "results": [],
    }
    if not inspect.isfunction(cls.__init__):  # Exception's own __init__
        return cls(f"{cls.__name__} happened")
    signature = inspect.signature(cls)
    arguments = {
        name: values[name]
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    positional = [
        arguments.pop(name)
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        and name in arguments
    ]
    return cls(*positional, **arguments)


def test_every_public_error_is_listed():
    names = {cls.__name__ for cls in PUBLIC_ERRORS}
    # ValueError-, RuntimeError- and OSError-based classes are all among them.
    assert {"InvalidMessageError", "ConfigurationError", "ClosedError"} <= names
    assert {"ConnectError", "SMTPTimeoutError", "SenderRefusedError"} <= names
    assert len(PUBLIC_ERRORS) >= 25


@pytest.mark.parametrize("cls", PUBLIC_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_becomes_smtplib_compatible(cls):
    cause = OSError("the cause")
    try:
        raise sample(cls) from cause
    except smtpkit.SMTPKitError as raised:
        original = raised
    error = as_django_error(original)
    assert isinstance(error, cls)
    assert isinstance(error, smtplib.SMTPException)
    assert type(error).__name__ == cls.__name__
    # Message, args, attributes and the chain are the original's.
    assert str(error) == str(original)
    assert error.args == original.args
    assert vars(error) == vars(original)
    assert error.__cause__ is cause
    assert error.__traceback__ is original.__traceback__
    assert as_django_error(error) is error
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(again) is type(error)
    assert (str(again), again.args) == (str(error), error.args)
    assert vars(again).keys() == vars(error).keys()


def test_a_message_smtpkit_refuses_raises_an_smtplib_exception(server):
    # A header line over 998 octets: smtpkit's InvalidMessageError (a ValueError).
    # A Message-ID is one token, which no Django version folds or encodes (Django
    # 6 folds a long unstructured field into encoded words).
    long_header = {"Message-ID": "<" + "a" * 1200 + "@example.com>"}
    message = EmailMessage(
        "S", "B", "from@example.com", ["to@example.com"], headers=long_header
    )
    with pytest.raises(smtplib.SMTPException, match="998") as caught:
        get_connection().send_messages([message])
    assert isinstance(caught.value, smtpkit.InvalidMessageError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.__cause__ is getattr(message, SMTPKIT_RESULT).error
    assert get_connection(fail_silently=True).send_messages([message]) == 0
    assert server.messages == []
    # The next message goes out on the same settings.
    ok = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    assert get_connection().send_messages([ok]) == 1
    assert len(server.messages) == 1


@pytest.mark.parametrize("count", [1, 2])  # Mailer.send, Mailer.send_many
def test_a_closed_mailer_raises_an_smtplib_exception(server, count):
    backend = EmailBackend()
    backend.mailer.close()
    messages = [
        EmailMessage("S", "B", "from@example.com", ["to@example.com"])
        for _ in range(count)
    ]
    with pytest.raises(smtplib.SMTPException, match="closed") as caught:
        backend.send_messages(messages)
    assert isinstance(caught.value, smtpkit.ClosedError)
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value.__cause__, smtpkit.ClosedError)
    assert EmailBackend(fail_silently=True).send_messages(messages) == 0
    assert server.messages == []


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"message_id_domain": "not a domain"}, "message_id_domain"),
        ({"message_id_domain": "bad\ndomain"}, "message_id_domain"),
        (  # a certificate file the TLS context cannot load
            {"tls": "starttls", "client_cert": "/nonexistent/cert.pem"},
            "cert.pem",
        ),
    ],
)
def test_what_mailer_refuses_is_improperly_configured_at_construction(
    server, options, match
):
    with override_settings(SMTPKIT=options):
        with pytest.raises(ImproperlyConfigured, match=match) as caught:
            get_connection()
        assert isinstance(caught.value.__cause__, smtpkit.ConfigurationError)
        with pytest.raises(ImproperlyConfigured):
            EmailBackend(fail_silently=True)
    assert server.messages == []


def test_a_valid_message_id_domain_is_accepted(server):
    options = {"timeout": 5.0, "message_id_domain": "mail.example.com"}
    with override_settings(SMTPKIT=options):
        backend = get_connection()
    assert backend.mailer is EmailBackend(message_id_domain="mail.example.com").mailer
    message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
    assert backend.send_messages([message]) == 1
    assert len(server.messages) == 1
