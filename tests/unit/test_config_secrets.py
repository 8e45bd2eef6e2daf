"""No password, token or piece of a URL's userinfo ever reaches an exception.

pydantic prints, returns from ``errors()`` and pickles the input of each error, and
for a cross-field check that input is the whole dict, password included.  urlsplit
quotes the netloc in some messages.  Every check here looks at ``str``, ``repr``,
``args``, ``errors()`` and the pickle of the error and of everything it chains to.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterable
from urllib.parse import quote

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import ConfigurationError, SMTPConfig
from smtpkit.auth import OAuthBearerAuth, PlainAuth, XOAuth2Auth

from ..chains import linked

SECRET = "s3cretPW"


def assert_hidden(error: BaseException, secrets: Iterable[str]) -> None:
    for link in linked(error):
        texts = [str(link), repr(link), repr(link.args)]
        if isinstance(link, pydantic.ValidationError):
            texts.append(repr(link.errors()))
        blob = pickle.dumps(link)
        for secret in secrets:
            assert all(secret not in text for text in texts), (secret, texts)
            assert secret.encode() not in blob, secret


def raised(build: Callable[[], object]) -> BaseException:
    with pytest.raises(ValueError) as info:
        build()
    return info.value


# -- the constructor, model_validate and friends -----------------------------------

CREDENTIALS = {"username": "u", "password": SECRET}
BAD_CONFIGS: dict[str, dict[str, object]] = {
    "tls from the environment": {"tls": "NONE", **CREDENTIALS},
    "credentials in cleartext": {"tls": "none", **CREDENTIALS},
    "client_key without client_cert": {"client_key": "/k.pem", **CREDENTIALS},
    "password without username": {"password": SECRET},
    "bad port": {"port": "x", **CREDENTIALS},
    "misspelt field": {"passwrd": SECRET},
    "token in cleartext": {"tls": "none", "auth": XOAuth2Auth("u", token=SECRET)},
    "bad auth item": {"auth": (PlainAuth("u", SECRET), "not-auth")},
    "password not a string": {"username": "u", "password": [SECRET]},
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_errors_hide_secrets_in_every_entry_point(case):
    fields = {"host": "smtp.example.com", **BAD_CONFIGS[case]}

    class Settings(pydantic.BaseModel):
        smtp: SMTPConfig

    builds = [
        lambda: SMTPConfig(**fields),
        lambda: SMTPConfig.model_validate(fields),
        lambda: Settings(smtp=fields),
    ]
    if all(isinstance(v, str) for v in fields.values()):
        builds.append(lambda: SMTPConfig.model_validate_json(json.dumps(fields)))
        builds.append(lambda: SMTPConfig.model_validate_strings(fields))
    for build in builds:
        error = raised(build)
        assert isinstance(error, pydantic.ValidationError)  # the documented type
        assert_hidden(error, [SECRET])


def test_errors_still_say_what_is_wrong():
    error = raised(lambda: SMTPConfig(host="h", tls="NONE", **CREDENTIALS))
    assert isinstance(error, pydantic.ValidationError)
    [item] = error.errors()
    assert item["loc"] == ("tls",)
    assert item["input"] == "NONE"  # a value that cannot be secret is still shown
    error = raised(lambda: SMTPConfig(host="h", tls="none", **CREDENTIALS))
    assert "allow_insecure_auth=True" in str(error)
    assert "<redacted>" in str(error)
    error = raised(lambda: SMTPConfig(host="h", passwrd=SECRET))
    assert "passwrd" in str(error)


def test_assigning_to_the_frozen_config_hides_the_value():
    config = SMTPConfig(host="h")
    with pytest.raises(pydantic.ValidationError, match="frozen") as info:
        config.password = SECRET  # type: ignore[misc,assignment]
    assert_hidden(info.value, [SECRET])


# -- URLs ---------------------------------------------------------------------------

PERCENT_HINT = (
    "percent-encode the password (e.g. urllib.parse.quote(password, safe=''))"
)


@pytest.mark.parametrize(
    "password",
    [
        "pa/s3cretPW",  # used to become host 'user', port error quoting 'pa'
        "12/s3cretPW",  # used to succeed with host 'user', port 12
        "12?s3cretPW=1",
        "pa#s3cretPW",
        "p@s3cretPW?timeout=3",
        "s3cretPW[x",
        "s3cretPW%zz",
        "s3cretPW%ff",  # not UTF-8 once decoded
        "s3cret＃PW",  # NFKC turns it into '#': urlsplit quoted the netloc
    ],
)
def test_unencoded_userinfo_is_refused_without_quoting_it(password):
    url = f"smtps://user:{password}@smtp.example.com"
    error = raised(lambda: SMTPConfig.from_url(url))
    assert isinstance(error, ConfigurationError)
    assert PERCENT_HINT in str(error)
    assert_hidden(error, [password, "s3cret", "cretPW"])


def test_at_in_a_query_value_must_be_encoded():
    with pytest.raises(ConfigurationError, match="%40"):
        SMTPConfig.from_url("smtp://h?local_hostname=a@b")
    assert SMTPConfig.from_url("smtp://h?local_hostname=a%40b").local_hostname == "a@b"


def test_urlsplit_errors_without_userinfo_still_name_the_problem():
    with pytest.raises(ConfigurationError, match="Port could not be cast"):
        SMTPConfig.from_url("smtp://h:abc")


def test_a_port_error_after_userinfo_does_not_quote_it():
    error = raised(lambda: SMTPConfig.from_url(f"smtp://u:{SECRET}@h:abc"))
    assert PERCENT_HINT in str(error)
    assert_hidden(error, [SECRET])


# Markers are non-ASCII so that a fragment holding one cannot occur in any message,
# URL or pickle opcode by chance; fragments of bare punctuation ("://") can.
_MARKERS = "ΩжßЖ密码"
PASSWORDS = st.text(st.sampled_from(_MARKERS + "/?#@:%[] +=&_.-~'09Az"), max_size=16)
USERS = st.text(st.sampled_from(_MARKERS + "/?#@:%09Az"), min_size=1, max_size=8)


def fragments(text: str) -> set[str]:
    """Every 3-character piece of *text* that holds a marker character."""
    return {
        text[i : i + 3]
        for i in range(len(text) - 2)
        if any(ch in _MARKERS for ch in text[i : i + 3])
    }


def secrets_of(user: str, password: str) -> set[str]:
    pieces = fragments(f"{user}:{password}")
    if len(password) >= 3 and any(ch in _MARKERS for ch in password):
        pieces.add(password)
    return pieces


@given(user=USERS, password=PASSWORDS)
def test_from_url_never_quotes_the_userinfo(user, password):
    # As typed, without percent-encoding; timeout=0 makes a sound URL fail too.
    url = f"smtp://{user}:{password}@smtp.example.com?timeout=0"
    assert_hidden(raised(lambda: SMTPConfig.from_url(url)), secrets_of(user, password))


@given(user=USERS, password=PASSWORDS)
def test_from_url_encoded_credentials_round_trip_and_stay_hidden(user, password):
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    config = SMTPConfig.from_url(f"smtps://{userinfo}@smtp.example.com")
    assert config.username == user
    assert config.password is not None
    assert config.password.get_secret_value() == password
    url = f"smtp://{userinfo}@smtp.example.com"  # STARTTLS...
    error = raised(lambda: SMTPConfig.from_url(url, tls="none"))  # ...now cleartext
    assert_hidden(error, secrets_of(user, password))


@given(
    password=PASSWORDS,
    env=st.sampled_from(
        [
            {"SMTP_TLS": "NONE"},
            {"SMTP_TLS": "none"},
            {"SMTP_PORT": "x"},
            {"SMTP_CLIENT_KEY": "/k.pem"},
        ]
    ),
)
def test_from_env_never_quotes_the_password(password, env):
    environ = {"SMTP_HOST": "h", "SMTP_USERNAME": "u", "SMTP_PASSWORD": password, **env}
    error = raised(lambda: SMTPConfig.from_env(environ=environ))
    assert_hidden(error, secrets_of("u", password))
    environ = {"SMTP_URL": f"smtp://u:{password}@h", **env}
    error = raised(lambda: SMTPConfig.from_env(environ=environ))
    assert_hidden(error, secrets_of("u", password))


SIBLINGS: list[dict[str, object]] = [
    {"tls": "NONE"},
    {"tls": "none"},
    {"client_key": "/k.pem"},
    {"timeout": 0},
    {"port": "x"},
    {"host": ""},
    {"pool": {"max_connections": 0}},
]


@given(password=PASSWORDS, sibling=st.sampled_from(SIBLINGS))
def test_constructor_never_quotes_secrets(password, sibling):
    hidden = secrets_of("u", password)
    fields = {"host": "h", "username": "u", "password": password, **sibling}
    assert_hidden(raised(lambda: SMTPConfig(**fields)), hidden)
    assert_hidden(raised(lambda: SMTPConfig.model_validate(fields)), hidden)
    assert_hidden(raised(lambda: SMTPConfig.for_provider("qq", **fields)), hidden)
    tokens = (XOAuth2Auth("u", token=password), OAuthBearerAuth("u", token=password))
    auth_fields = {"host": "h", "auth": tokens, **sibling}
    assert_hidden(raised(lambda: SMTPConfig(**auth_fields)), hidden)


@pytest.mark.parametrize(
    "document",
    [
        '{"host": "h", "username": "u", "password": "%s",}',  # trailing comma
        '{"host": "h", "username": "u", "password": "%s"',  # cut short
        '{"host": "h", "username": "u", "password": "%s", "tls": "none"}',
    ],
    ids=["syntax", "truncated", "cross-field"],
)
def test_json_errors_never_quote_the_document(document):
    assert_hidden(
        raised(lambda: SMTPConfig.model_validate_json(document % SECRET)), [SECRET]
    )


def test_a_url_without_scheme_does_not_quote_the_user_name():
    error = raised(
        lambda: SMTPConfig.from_url(f"alice.payroll:{SECRET}@smtp.example.com")
    )
    assert_hidden(error, [SECRET, "alice.payroll"])
    assert "smtp://" in str(error)


# -- credentials that cannot be encoded ----------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
PRINTABLE = st.text(
    st.characters(whitelist_categories=["L", "N", "P", "S"]), max_size=6
)
LONE = (
    "Value error, value contains characters that are not valid Unicode (lone "
    "surrogates, as os.environ gives for bytes that are not UTF-8)"
)


@given(
    field=st.sampled_from(["username", "password"]),
    before=PRINTABLE,
    surrogate=SURROGATES,
    after=PRINTABLE,
    wrap=st.booleans(),
)
def test_a_lone_surrogate_in_the_credentials_is_refused_without_quoting(
    field, before, surrogate, after, wrap
):
    # os.environ decodes bytes that are not UTF-8 so (PEP 383): no SASL
    # mechanism could send it, so it fails here rather than at the first login.
    value = f"{SECRET}{before}{surrogate}{after}"
    fields = {"host": "h", "username": "u", "password": "p"}
    fields[field] = pydantic.SecretStr(value) if wrap and field == "password" else value
    error = raised(lambda: SMTPConfig(**fields))
    assert isinstance(error, pydantic.ValidationError)
    [entry] = error.errors()
    assert entry["loc"] == (field,)
    assert entry["msg"] == LONE
    assert entry["input"] == "<redacted>"
    assert error.__cause__ is None
    assert error.__context__ is None
    assert_hidden(error, [SECRET])


def test_from_env_refuses_an_undecodable_password_without_quoting_it():
    password = (SECRET.encode() + b"\xff").decode("utf-8", "surrogateescape")
    environ = {"SMTP_HOST": "h", "SMTP_USERNAME": "u", "SMTP_PASSWORD": password}
    error = raised(lambda: SMTPConfig.from_env(environ=environ))
    assert isinstance(error, pydantic.ValidationError)
    assert [entry["loc"] for entry in error.errors()] == [("password",)]
    assert_hidden(error, [SECRET])


@given(st.text(st.characters(blacklist_categories=["Cs"]), max_size=12))
def test_any_other_unicode_credential_is_kept(password):
    config = SMTPConfig(host="h", username="\U0001f600 u", password=password or "p")
    assert config.password is not None
    assert config.password.get_secret_value() == (password or "p")
