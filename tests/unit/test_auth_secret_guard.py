"""What a custom Auth or token provider raises never carries its secret on.

``run_auth_code`` turns the caller's errors into ``TransportError``.  Before the
fix only a UnicodeError raised directly was kept out of the chain: one reached as
``__cause__``/``__context__`` or inside an ExceptionGroup still held the whole
SASL payload in its ``object``, and ``int(password)`` quoted the password in the
message itself (and so in pickles and tracebacks).
"""

from __future__ import annotations

import json
import pickle
import sys
import traceback
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from smtpkit import NetworkError, TransportError
from smtpkit._auth import auth_secrets, run_auth_code

from ..chains import linked

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover - the backport pytest itself depends on before 3.11
    from exceptiongroup import ExceptionGroup

SOURCE = "VaultAuth (PLAIN)"
PASSWORD = "hunter2-\u00dfecret"  # not ASCII: .encode("ascii") fails on it


def assert_hidden(error: BaseException, secret: str) -> None:
    """Nothing a user may print, log or pickle of *error* shows *secret*."""
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1]}
    report = "".join(traceback.format_exception(error))
    for link in linked(error):
        texts = (str(link), repr(link), repr(vars(link)), report)
        assert not any(form in text for form in forms for text in texts)
        assert secret.encode() not in pickle.dumps(link)


def run(call: Callable[[], object], secret: str = PASSWORD) -> TransportError:
    with pytest.raises(TransportError) as info:
        run_auth_code(SOURCE, call, secrets=[secret])
    return info.value


def encode() -> bytes:
    return f"\0user\0{PASSWORD}".encode("ascii")


def reraised_from() -> None:
    try:
        encode()
    except UnicodeError as exc:
        msg = "password must be ASCII"
        raise ValueError(msg) from exc


def reraised_in_handler() -> None:
    try:
        encode()
    except UnicodeError:
        msg = "password must be ASCII"
        raise ValueError(msg)  # noqa: B904 - the implicit __context__ is the point


def grouped() -> None:
    try:
        encode()
    except UnicodeError as exc:
        msg = "token refresh failed"
        raise ExceptionGroup(msg, [exc]) from None


def deep_in_a_group() -> None:
    try:
        reraised_from()
    except ValueError as exc:
        msg = "vault lookups failed"
        raise ExceptionGroup(msg, [KeyError("k"), exc]) from None


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        (reraised_from, "ValueError: password must be ASCII"),
        (reraised_in_handler, "ValueError: password must be ASCII"),
        (grouped, "ExceptionGroup: token refresh failed (1 sub-exception)"),
        (deep_in_a_group, "ExceptionGroup: vault lookups failed (2 sub-exceptions)"),
    ],
)
def test_a_unicode_error_anywhere_in_the_chain_drops_the_chain(call, shown):
    error = run(call, secret="unknown to smtpkit")
    assert str(error) == f"{SOURCE} raised {shown}"
    assert error.__cause__ is None
    assert error.__context__ is None
    assert error.command == "AUTH"
    assert not error.is_transient
    assert_hidden(error, PASSWORD)


def test_a_known_secret_in_the_text_is_redacted_and_the_chain_dropped():
    error = run(lambda: int(PASSWORD))
    assert str(error) == (
        f"{SOURCE} raised ValueError: invalid literal for int() with base 10: '***'"
    )
    assert error.__cause__ is None
    assert error.__context__ is None
    assert_hidden(error, PASSWORD)


def test_a_known_secret_in_an_attribute_of_the_cause_drops_the_chain():
    # JSONDecodeError's text quotes nothing, but its .doc is the whole document.
    error = run(lambda: json.loads('{"access_token": "' + PASSWORD + '",}'))
    # The wording is json's own (3.13 says "Illegal trailing comma ...").
    assert str(error).startswith(f"{SOURCE} raised JSONDecodeError: ")
    assert error.__cause__ is None
    assert_hidden(error, PASSWORD)


def test_an_error_that_shows_no_secret_keeps_its_cause():
    def lookup() -> None:
        msg = "no credentials in the vault"
        raise LookupError(msg)

    error = run(lookup)
    assert str(error) == f"{SOURCE} raised LookupError: no credentials in the vault"
    assert isinstance(error.__cause__, LookupError)


def test_an_error_whose_str_fails_is_still_reported():
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    def call() -> None:
        raise UnprintableError

    error = run(call)
    assert str(error) == f"{SOURCE} raised UnprintableError"
    assert isinstance(error.__cause__, UnprintableError)


def test_an_smtpkit_error_passes_through_without_a_chain_that_shows_secrets():
    def call() -> None:
        try:
            encode()
        except UnicodeError as exc:
            msg = f"vault for {PASSWORD} sealed"
            raise NetworkError(msg) from exc

    with pytest.raises(NetworkError) as info:
        run_auth_code(SOURCE, call, secrets=[PASSWORD])
    error = info.value
    assert str(error) == "vault for *** sealed"
    assert error.is_transient  # still the caller's choice: retried
    assert error.__cause__ is None
    assert error.__context__ is None
    assert_hidden(error, PASSWORD)


def test_an_smtpkit_error_with_a_harmless_chain_keeps_it():
    def call() -> None:
        try:
            {}["vault"]
        except KeyError as exc:
            msg = "vault sealed"
            raise NetworkError(msg) from exc

    with pytest.raises(NetworkError) as info:
        run_auth_code(SOURCE, call, secrets=[PASSWORD])
    assert isinstance(info.value.__cause__, KeyError)


def test_the_secrets_of_an_auth_are_its_secret_fields_and_secret_names():
    class Custom:
        __slots__ = ("api_key", "region")

        def __init__(self) -> None:
            self.api_key = "k-123"
            self.region = "eu"

    class CustomWithDict(Custom):
        def __init__(self) -> None:
            super().__init__()
            self.client_secret = "cs-1"
            self.refresh_token = ""  # empty: nothing to hide
            self.signing = SecretStr("sig-2")
            self.username = "alice"

    class OneSlot:
        __slots__ = "token"  # noqa: PLC0205 - the string form is what is tested

        def __init__(self) -> None:
            self.token = "t-9"

    assert auth_secrets(Custom()) == ("k-123",)
    assert auth_secrets(OneSlot()) == ("t-9",)
    assert sorted(auth_secrets(CustomWithDict())) == ["cs-1", "k-123", "sig-2"]


@given(secret=st.text(min_size=1).map(lambda text: f"s3cr\u00eat{text}"))
def test_no_known_secret_shows_whatever_it_holds(secret):
    def quoting() -> None:
        try:
            secret.encode("ascii")
        except UnicodeError as exc:
            msg = f"bad password {secret!r}"
            raise ValueError(msg) from exc

    for call in (quoting, lambda: int(secret)):
        with pytest.raises(TransportError) as info:
            run_auth_code(SOURCE, call, secrets=[secret])
        assert "***" in str(info.value)
        assert info.value.__cause__ is None
        assert_hidden(info.value, secret)


@pytest.mark.parametrize("length", [8, 199, 200, 201, 1200])
def test_a_long_token_cut_short_by_the_message_that_quotes_it_is_hidden(length):
    # int() quotes at most 200 characters of what it failed on: a long OAuth2
    # token shows only its start, which is still most of a secret.
    token = ("ya29." + "x1Y2z3" * 300)[:length]
    error = run(lambda: int(token), secret=token)
    assert "***" in str(error)
    assert token[:8] not in str(error)
    assert_hidden(error, token[:8])


def test_a_short_piece_of_text_that_only_starts_like_a_secret_is_kept():
    secret = "hunter2-very-long-secret"
    error = run(lambda: int("hunter"), secret=secret)
    assert "'hunter'" in str(error)
