"""SASL encoders: the exact bytes each mechanism answers with."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from smtpkit import SMTPConfig
from smtpkit.auth import (
    Auth,
    CramMD5Auth,
    LoginAuth,
    OAuthBearerAuth,
    PlainAuth,
    XOAuth2Auth,
)


def test_plain_initial_response():
    respond = PlainAuth("user", "pass").responder()
    assert respond(None) == b"\0user\0pass"


def test_plain_answers_empty_challenge_with_same_payload():
    respond = PlainAuth("user", "pass").responder()
    assert respond(b"") == b"\0user\0pass"


def test_plain_is_utf8():
    respond = PlainAuth("张三@例子.cn", "密码ü").responder()
    assert respond(None) == "\0张三@例子.cn\0密码ü".encode()


def test_plain_accepts_secretstr():
    assert PlainAuth("u", SecretStr("p")).responder()(None) == b"\0u\0p"


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
    ),
)
def test_plain_round_trips_any_unicode(username, password):
    payload = PlainAuth(username, password).responder()(None)
    assert payload is not None
    authzid, user, secret = payload.decode("utf-8").split("\0")
    assert (authzid, user, secret) == ("", username, password)


def test_login_answers_username_then_password():
    respond = LoginAuth("user@example.com", "sécret").responder()
    assert respond(None) is None  # no initial response
    assert respond(b"Username:") == b"user@example.com"
    assert respond(b"Password:") == "sécret".encode()
    assert respond(b"again?") == b""


def test_login_order_not_prompt_text():
    respond = LoginAuth("u", "p").responder()
    assert respond(b"VXNlcm5hbWU6-anything") == b"u"
    assert respond(b"") == b"p"


def test_cram_md5_rfc2195_vector():
    respond = CramMD5Auth("tim", "tanstaaftanstaaf").responder()
    assert respond(None) is None
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert respond(challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_xoauth2_format():
    respond = XOAuth2Auth("me@gmail.com", token="ya29.tok").responder()
    assert respond(None) == b"user=me@gmail.com\x01auth=Bearer ya29.tok\x01\x01"
    assert respond(b'{"status":"401"}') == b""


def test_oauthbearer_gs2_header():
    respond = OAuthBearerAuth("me@example.com", token="tok").responder()
    assert respond(None) == b"n,a=me@example.com,\x01auth=Bearer tok\x01\x01"
    assert respond(b'{"status":"invalid_token"}') == b"\x01"


def test_oauthbearer_escapes_comma_and_equals():
    respond = OAuthBearerAuth("a,b=c@example.com", token="t").responder()
    assert respond(None) == b"n,a=a=2Cb=3Dc@example.com,\x01auth=Bearer t\x01\x01"


@pytest.mark.parametrize("cls", [XOAuth2Auth, OAuthBearerAuth])
def test_token_provider_called_per_responder(cls):
    tokens = iter(["first", "second"])
    calls = []

    def provide() -> str:
        calls.append(1)
        return next(tokens)

    auth = cls("me@example.com", token_provider=provide)
    assert calls == []
    assert b"Bearer first" in auth.responder()(None)
    assert b"Bearer second" in auth.responder()(None)
    assert len(calls) == 2
    assert auth.retries_after_failure()


@pytest.mark.parametrize("cls", [XOAuth2Auth, OAuthBearerAuth])
def test_fixed_token_is_not_retried(cls):
    assert not cls("me@example.com", token="t").retries_after_failure()


@pytest.mark.parametrize("cls", [XOAuth2Auth, OAuthBearerAuth])
def test_token_or_provider_exactly_one(cls):
    with pytest.raises(ValueError, match="exactly one"):
        cls("me@example.com")
    with pytest.raises(ValueError, match="exactly one"):
        cls("me@example.com", token="t", token_provider=lambda: "t")


@pytest.mark.parametrize("cls", [PlainAuth, LoginAuth, CramMD5Auth])
def test_password_auth_repr_hides_password(cls):
    auth = cls("user", "hunter2-secret")
    assert "hunter2-secret" not in repr(auth)
    assert "hunter2-secret" not in str(auth)
    assert "user" in repr(auth)
    assert not auth.retries_after_failure()


@pytest.mark.parametrize("cls", [XOAuth2Auth, OAuthBearerAuth])
def test_token_auth_repr_hides_token(cls):
    assert "tok-secret" not in repr(cls("u", token="tok-secret"))
    provided = cls("u", token_provider=lambda: "tok-secret")
    assert "tok-secret" not in repr(provided)


def test_responders_are_independent():
    auth = LoginAuth("u", "p")
    first, second = auth.responder(), auth.responder()
    assert first(b"Username:") == b"u"
    assert second(b"Username:") == b"u"
    assert first(b"Password:") == b"p"


def test_auth_objects_are_immutable_and_hashable():
    auth = PlainAuth("u", "p")
    with pytest.raises(AttributeError):
        auth.username = "other"  # type: ignore[misc]
    assert PlainAuth("u", "p") == auth


def test_mechanism_names_and_strength_order():
    assert [cls.mechanism for cls in (PlainAuth, LoginAuth, CramMD5Auth)] == [
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
    ]
    assert XOAuth2Auth.mechanism == "XOAUTH2"
    assert OAuthBearerAuth.mechanism == "OAUTHBEARER"
    ranked = sorted(
        [LoginAuth, PlainAuth, OAuthBearerAuth, CramMD5Auth, XOAuth2Auth],
        key=lambda cls: cls.strength,
        reverse=True,
    )
    assert ranked == [OAuthBearerAuth, XOAuth2Auth, CramMD5Auth, PlainAuth, LoginAuth]


def test_custom_mechanism_subclass():
    class Anonymous(Auth):
        mechanism = "ANONYMOUS"

        def responder(self):
            return lambda challenge: b"trace"

    auth = Anonymous()
    assert auth.responder()(None) == b"trace"
    assert auth.strength == 0
    assert not auth.retries_after_failure()
    with pytest.raises(TypeError):
        Auth()  # type: ignore[abstract]


def test_rank_reads_the_instance_so_an_instance_or_subclass_value_wins():
    # Before, rank() was a classmethod: an instance attribute was ignored and a
    # property made sorting raise TypeError.
    class Configurable(Auth):
        mechanism = "X-CONFIGURABLE"

        def __init__(self, strength: int) -> None:
            self.strength = strength  # type: ignore[misc]

        def responder(self):
            return lambda challenge: b""

    class Computed(Auth):
        mechanism = "X-COMPUTED"

        @property
        def strength(self) -> int:  # type: ignore[override]
            return 99

        def responder(self):
            return lambda challenge: b""

    low, high = Configurable(5), Configurable(50)
    assert low.rank(over_tls=False) == 5
    assert high.rank(over_tls=True) == 50  # no strength_over_tls: strength
    assert Computed().rank(over_tls=False) == 99
    plain = PlainAuth("u", "p")
    computed = Computed()
    config = SMTPConfig(host="h", auth=[low, plain, high, computed])
    assert config.auth_strategies() == (computed, high, plain, low)


def test_a_cram_md5_subclass_ranks_over_tls_by_its_strength_over_tls():
    class PreferredCram(CramMD5Auth):
        strength = 99

    class PreferredCramEverywhere(CramMD5Auth):
        strength = 99
        strength_over_tls = 99

    plain = PlainAuth("u", "p")
    config = SMTPConfig(host="h", auth=[plain, PreferredCram("u", "p")])
    assert [a.mechanism for a in config.auth_strategies()] == ["CRAM-MD5", "PLAIN"]
    # CramMD5Auth's strength_over_tls (15) still ranks it below PLAIN over TLS.
    assert [a.mechanism for a in config.auth_strategies(over_tls=True)] == [
        "PLAIN",
        "CRAM-MD5",
    ]
    everywhere = SMTPConfig(host="h", auth=[plain, PreferredCramEverywhere("u", "p")])
    assert everywhere.auth_strategies(over_tls=True)[0].mechanism == "CRAM-MD5"
