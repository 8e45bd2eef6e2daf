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
import time
import traceback
import urllib.parse
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from smtpkit import NetworkError, TransportError
from smtpkit._auth import auth_secrets, run_auth_code
from smtpkit._redaction import SHOWN_MIN, SecretForms

from ..chains import linked

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover - the backport pytest itself depends on before 3.11
    from exceptiongroup import ExceptionGroup

SOURCE = "VaultAuth (PLAIN)"
PASSWORD = "hunter2-\u00dfecret"  # not ASCII: .encode("ascii") fails on it

# How the caller's code may write a secret into a text: a JSON body, a form
# body, a query string or a URL path.
ENCODINGS: dict[str, Callable[[str], str]] = {
    "json": lambda secret: json.dumps(secret)[1:-1],
    "json-unicode": lambda secret: json.dumps(secret, ensure_ascii=False)[1:-1],
    "quote": lambda secret: urllib.parse.quote(secret, safe=""),
    "quote-path": urllib.parse.quote,
    "quote_plus": urllib.parse.quote_plus,
}


def encoded_forms(secret: str) -> set[str]:
    """*secret* as each of ENCODINGS writes it."""
    try:
        return {write(secret) for write in ENCODINGS.values()}
    except UnicodeError:  # lone surrogates: no URL encoding writes them
        return {ENCODINGS["json"](secret), ENCODINGS["json-unicode"](secret)}


def assert_hidden(error: BaseException, secret: str) -> None:
    """Nothing a user may print, log or pickle of *error* shows *secret*."""
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], *encoded_forms(secret)}
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


# The reviewer's findings on the redaction (each failed before the fix).


def test_a_secret_after_a_character_it_starts_with_is_wholly_hidden():
    # Before: the piece matched at "a" + secret stopped one character short
    # and hid the real occurrence: "bad token ***aTOPSECRETVALUE42".
    secret = "aaaaaaaaTOPSECRETVALUE42"
    error = run(lambda: int("bad token a" + secret), secret=secret)
    assert str(error) == (
        f"{SOURCE} raised ValueError: invalid literal for int() with base 10: "
        "'bad token a***'"
    )
    assert_hidden(error, secret)


def test_a_cut_secret_after_a_longer_run_of_its_first_character_is_hidden():
    # The piece at the first "a" stops where the secret's run of "a"s ends;
    # the secret's own start is two characters later, and is cut short.
    secret = "a" * 14 + "TOPSECRETVALUE42"
    text = "a" * 16 + "TOPSECRETVAL"
    assert SecretForms([secret]).redact(f"<{text}>") == "<***>"


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_a_secret_escaped_by_json_or_url_encoding_is_hidden(encoding):
    # A quote, a slash or a non-ASCII letter inside the secret: before, the
    # redaction stopped at the first escape and the rest of the secret leaked.
    secret = 'Az09xYq8"Kp3Lm7/1//0gRt2\u00e9Wv5 Nb+'
    body = ENCODINGS[encoding](secret)

    def call() -> None:
        msg = f"token endpoint said 400 for client_secret={body}&grant_type=x"
        raise ValueError(msg)

    error = run(call, secret=secret)
    assert str(error) == (
        f"{SOURCE} raised ValueError: token endpoint said 400 for "
        "client_secret=***&grant_type=x"
    )
    assert error.__cause__ is None
    assert_hidden(error, secret)


def test_a_word_a_secret_starts_with_is_not_redacted():
    # Before, any 8 characters of a secret's start counted: "password" was
    # hidden for the secret "password-2024-Long!".
    text = "password missing in vault response; password policy requires rotation"

    def call() -> None:
        raise KeyError(text)

    error = run(call, secret="password-2024-Long!")
    assert str(error) == f"{SOURCE} raised KeyError: '{text}'"
    assert isinstance(error.__cause__, KeyError)  # nothing to hide: kept


def test_a_piece_of_twelve_characters_counts_and_of_eleven_does_not():
    secret = "password-2024-Long!"
    forms = SecretForms([secret])
    assert forms.redact(f"[{secret[:SHOWN_MIN]}]") == "[***]"
    assert forms.redact(f"[{secret[: SHOWN_MIN - 1]}]") == f"[{secret[:11]}]"


def test_a_megabyte_of_near_misses_is_redacted_in_well_under_a_second():
    # Before, every piece of every form was searched for anew after each hit:
    # 320 KB of near misses took 6 s.  Non-ASCII makes several forms start alike.
    secret = "\u00e9t\u00e9-secret-token-xyz"
    body = ("\u00e9t\u00e9-secrZ " * 100_000) + secret

    def call() -> None:
        raise ValueError(body)

    started = time.perf_counter()
    error = run(call, secret=secret)
    elapsed = time.perf_counter() - started
    assert str(error).endswith("\u00e9t\u00e9-secrZ ***")
    assert elapsed < 2.0  # generous: about 0.05 s on an idle machine


_SECRETS = st.text(min_size=1).filter(lambda text: "*" not in text)
_WRITERS = st.sampled_from(
    [
        str,
        lambda secret: repr(secret)[1:-1],
        lambda secret: ascii(secret)[1:-1],
        *ENCODINGS.values(),
    ]
)


@given(
    secret=_SECRETS,
    write=_WRITERS,
    before=st.text(),
    after=st.text(),
    sizes=st.tuples(
        st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=200)
    ),
)
def test_no_piece_of_a_secret_survives_wherever_it_stands(
    secret, write, before, after, sizes
):
    """Whatever precedes it (a start of itself too), however it is escaped, and
    wherever the message cuts it: no piece of the secret remains."""
    overlap, cut = sizes
    try:
        shown = write(secret)
    except UnicodeError:  # a lone surrogate cannot be URL-encoded at all
        return
    forms = SecretForms([secret])
    for text in (
        before + shown[:overlap] + shown + after,  # starts like itself
        before + shown[:overlap] + shown[: len(shown) - cut],  # cut at the end
    ):
        redacted = forms.redact(text)
        assert not forms.shown_in(redacted)
        assert all(form[:SHOWN_MIN] not in redacted for form in forms.forms)
        if shown in text:
            assert shown not in redacted


@given(
    secret=st.text(min_size=SHOWN_MIN).filter(lambda text: "\n" not in text),
    lengths=st.lists(st.integers(min_value=0, max_value=SHOWN_MIN - 1)),
)
def test_pieces_shorter_than_twelve_characters_are_kept(secret, lengths):
    forms = SecretForms([secret])
    text = "\n".join(secret[:length] for length in lengths)
    if not forms.shown_in(text):  # an escaped form may still start like a piece
        assert forms.redact(text) == text
    plain = SecretForms(["Q7wE9rT1-yU3iO5pA8sD2fG4hJ6kL"])
    words = "\n".join("Q7wE9rT1-yU3iO5pA8sD2fG4hJ6kL"[:length] for length in lengths)
    assert plain.redact(words) == words


def test_forms_never_show_in_a_repr():
    forms = SecretForms([PASSWORD])
    assert PASSWORD not in repr(forms)
    assert not SecretForms([]).shown_in(PASSWORD)
    assert SecretForms(["", ""]).redact(PASSWORD) == PASSWORD
