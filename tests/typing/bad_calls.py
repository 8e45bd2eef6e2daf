"""Calls that every checker must refuse, and that fail at run time too.

Each line carries ``# type: ignore[code]``: mypy (``warn_unused_ignores``) and pyright
(``reportUnnecessaryTypeIgnoreComment``) report an ignore that nothing needed, so a
call that starts to type-check fails the typing test.  tests/test_typing.py also calls
each ``bad_*`` function and expects ``TypeError`` or ``pydantic.ValidationError``.
"""

from __future__ import annotations

from smtpkit import (
    Address,
    Attachment,
    Envelope,
    Message,
    PoolLimits,
    RateLimit,
    RetryPolicy,
    SMTPConfig,
)

URL = "smtp://relay.example.com"


def bad_message_sender_and_to_not_addresses() -> None:
    Message(sender=123, to=object())  # type: ignore[arg-type]


def bad_message_without_sender() -> None:
    Message(to="b@example.com")  # type: ignore[call-arg]


def bad_message_to_not_addresses() -> None:
    Message(sender="a@example.com", to=[1])  # type: ignore[list-item]


def bad_message_misspelt_field() -> None:
    Message(sender="a@example.com", subjet="typo")  # type: ignore[call-arg]


def bad_message_attachment_as_path() -> None:
    Message(sender="a@example.com", attachments=["a.pdf"])  # type: ignore[list-item]


def bad_message_header_not_str() -> None:
    Message(sender="a@example.com", headers={"X-N": 1})  # type: ignore[dict-item]


def bad_message_sender_positional() -> None:
    Message("a@example.com")  # type: ignore[call-arg]


def bad_attachment_without_content() -> None:
    Attachment("a.txt")  # type: ignore[call-arg]


def bad_attachment_content_type_positional() -> None:
    Attachment("a.txt", b"x", "text/plain")  # type: ignore[call-arg]


def bad_envelope_recipient_not_str() -> None:
    Envelope("a@example.com", [1])  # type: ignore[list-item]


def bad_rate_limit_not_a_number() -> None:
    RateLimit("ten")  # type: ignore[arg-type]


def bad_rate_limit_burst_positional() -> None:
    RateLimit(1, 2)  # type: ignore[call-arg]


def bad_rate_limit_misspelt() -> None:
    RateLimit(per_second=1, bursts=2)  # type: ignore[call-arg]


def bad_pool_limits_misspelt() -> None:
    PoolLimits(max_conections=2)  # type: ignore[call-arg]


def bad_retry_policy_misspelt() -> None:
    RetryPolicy(attempt=2)  # type: ignore[call-arg]


def bad_retry_codes_as_bytes() -> None:
    RetryPolicy(retry_codes=b"\x01\xa5")  # type: ignore[arg-type]


def bad_retry_codes_as_mapping() -> None:
    RetryPolicy(retry_codes={421: "busy"})  # type: ignore[arg-type]


def bad_no_retry_enhanced_as_mapping() -> None:
    RetryPolicy(no_retry_enhanced={"4.7.1": "greylist"})  # type: ignore[arg-type]


def bad_address_from_a_triple() -> None:
    Address(("Ada", "a@example.com", "x"))  # type: ignore[arg-type]


def bad_config_unknown_tls() -> None:
    SMTPConfig(host="h", tls="ssl")  # type: ignore[arg-type]


def bad_config_unknown_tls_version() -> None:
    SMTPConfig(host="h", tls_min_version="1.1")  # type: ignore[arg-type]


def bad_config_auth_as_name() -> None:
    SMTPConfig(host="h", auth="PLAIN")  # type: ignore[arg-type]


def bad_config_without_host() -> None:
    SMTPConfig(port=25)  # type: ignore[call-arg]


def bad_from_url_misspelt_override() -> None:
    SMTPConfig.from_url(URL, passwrd="x")  # type: ignore[call-arg]


def bad_from_url_unknown_tls() -> None:
    SMTPConfig.from_url(URL, tls="ssl")  # type: ignore[arg-type]


def bad_from_env_misspelt_override() -> None:
    SMTPConfig.from_env(environ={"SMTP_URL": URL}, hots="x")  # type: ignore[call-arg]


def bad_for_provider_misspelt_credential() -> None:
    SMTPConfig.for_provider("qq", usrname="u")  # type: ignore[call-arg]
