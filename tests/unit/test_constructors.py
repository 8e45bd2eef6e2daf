"""Constructors: positional first arguments, one-is-many shorthands, typed overrides.

The static signatures are checked by tests/test_typing.py; these tests pin the run-time
side, which must refuse what the signatures refuse and keep pydantic's errors.
"""

from __future__ import annotations

import pickle
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import (
    Address,
    Attachment,
    Envelope,
    Mailer,
    Message,
    RateLimit,
    RetryDetails,
    RetryPolicy,
    SMTPConfig,
    TransportError,
)
from smtpkit.testing import FakeTransport, no_wait

URL = "smtps://me%40example.com:s3cret@smtp.example.com"


def test_rate_limit_takes_per_second_positionally() -> None:
    assert RateLimit(10) == RateLimit(per_second=10)
    assert RateLimit(2.5, burst=3) == RateLimit(per_second=2.5, burst=3)


def test_envelope_and_attachment_take_their_first_fields_positionally() -> None:
    envelope = Envelope("a@example.com", ["b@example.com"], smtputf8=True)
    assert envelope == Envelope(
        sender="a@example.com", recipients=("b@example.com",), smtputf8=True
    )
    assert Envelope("", "b@example.com").recipients == ("b@example.com",)
    attachment = Attachment("notes.txt", b"hi", content_id="n1")
    assert attachment == Attachment(
        filename="notes.txt", content=b"hi", content_id="n1"
    )
    assert attachment.content_type == "text/plain"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RateLimit(1, 2), "takes at most 1 positional"),
        (
            lambda: RateLimit(1, per_second=2),
            "multiple values for argument 'per_second'",
        ),
        (lambda: Envelope("a@x.org", ["b@x.org"], True), "at most 2 positional"),
        (lambda: Attachment("a", b"", "text/plain"), "at most 2 positional"),
        (lambda: Attachment("a", filename="b", content=b""), "multiple values"),
        (lambda: Address("a@x.org", "b@x.org"), "either one address string"),
    ],
)
def test_calls_that_cannot_bind_are_type_errors(build: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        build()


@pytest.mark.parametrize(
    "build",
    [
        RateLimit,
        lambda: RateLimit("ten"),
        lambda: RateLimit(1, bursts=2),
        lambda: Envelope("a@example.com"),
        lambda: Envelope("a@example.com", []),
        lambda: Attachment("a.txt"),
        lambda: Message(to="b@example.com"),
    ],
)
def test_missing_unknown_and_invalid_fields_stay_validation_errors(build: Any) -> None:
    with pytest.raises(pydantic.ValidationError):
        build()


def test_positional_models_survive_copy_validate_json_and_pickle() -> None:
    for value in (
        RateLimit(3, burst=2),
        Envelope("a@example.com", "b@example.com"),
        Attachment("a.bin", b"\x00\x01"),
    ):
        model = type(value)
        assert model.model_validate(value.model_dump()) == value
        assert model.model_validate_json(value.model_dump_json()) == value
        assert pickle.loads(pickle.dumps(value)) == value  # noqa: S301 - our own bytes
        assert value.model_copy() == value
        with pytest.raises(pydantic.ValidationError):
            value.__setattr__(next(iter(model.model_fields)), None)  # frozen


@given(st.lists(st.from_regex(r"[a-z]{1,8}@example\.com", fullmatch=True), min_size=1))
def test_one_recipient_string_equals_a_list_of_one(recipients: list[str]) -> None:
    first = recipients[0]
    assert Envelope("a@example.com", first) == Envelope("a@example.com", [first])
    assert Envelope("a@example.com", recipients).recipients == tuple(
        dict.fromkeys(recipients)
    )


def test_one_no_retry_code_is_a_set_of_one() -> None:
    assert RetryPolicy(no_retry_enhanced="4.7.1").no_retry_enhanced == {"4.7.1"}
    assert RetryPolicy(no_retry_enhanced=["4.7", "4.2.2"]).no_retry_enhanced == {
        "4.7",
        "4.2.2",
    }
    assert RetryPolicy(retry_codes=[421, 451]).retry_codes == {421, 451}


@pytest.mark.parametrize(
    "build",
    [
        lambda: SMTPConfig.from_url(URL, passwrd="x"),
        lambda: SMTPConfig.from_env(environ={"SMTP_URL": URL}, hots="x"),
        lambda: SMTPConfig.for_provider("qq", usrname="u", password="s3cret"),
    ],
)
def test_misspelt_overrides_are_refused_without_showing_them(build: Any) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        build()
    assert "Extra inputs are not permitted" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_tls_takes_the_enum_or_its_value_only() -> None:
    assert SMTPConfig(host="h", tls="none").port == 25
    with pytest.raises(pydantic.ValidationError):
        SMTPConfig(host="h", tls="ssl")


def test_retry_hook_gets_the_transport_error() -> None:
    seen: list[RetryDetails] = []
    fake = FakeTransport()
    fake.fail_next(1, "451 4.3.0 busy")
    with Mailer(transport=fake, retry=no_wait(), on_retry=seen.append) as mailer:
        mailer.send(Message(sender="a@example.com", to="b@example.com", text="hi"))
    [details] = seen
    assert isinstance(details.error, TransportError)
    assert details.error.is_transient


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"retry_codes": b"\x01\xa5"}, "retry_codes takes a set of codes .* not bytes"),
        ({"retry_codes": memoryview(b"\x01")}, "not bytes"),
        ({"retry_codes": {421: "busy"}}, "not a mapping .* pass its keys"),
        ({"no_retry_enhanced": {"4.7.1": "x"}}, "no_retry_enhanced .* not a mapping"),
        ({"no_retry_enhanced": b"4.7.1"}, "no_retry_enhanced .* not bytes"),
    ],
)
def test_code_sets_refuse_bytes_and_mappings_saying_what_to_pass(
    fields: dict[str, Any], match: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        RetryPolicy(**fields)


@given(st.frozensets(st.integers(400, 599), max_size=8))
def test_code_sets_take_any_set_list_tuple_range_or_keys(codes: frozenset[int]) -> None:
    for given_codes in (
        set(codes),
        sorted(codes),
        tuple(codes),
        dict.fromkeys(codes).keys(),
    ):
        assert RetryPolicy(retry_codes=given_codes).retry_codes == codes
    assert RetryPolicy(retry_codes=range(450, 453)).retry_codes == {450, 451, 452}
    policy = RetryPolicy(retry_codes=codes, no_retry_enhanced=["4.7.1"])
    assert (
        RetryPolicy.model_validate_json(policy.model_dump_json(), strict=True) == policy
    )


def test_an_address_takes_a_name_email_pair_positionally() -> None:
    assert Address(("Ada", "a@x.org")) == Address(email="a@x.org", name="Ada")
    assert Address(("", "a@x.org")).name is None


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: Message(sender=("a@x.org", "b@x.org")),
            r"sender\n.*pair needs a display name without '@' first.*to=\[\.\.\.\]",
        ),
        (lambda: Address(("a@x.org", "b@x.org")), "display name without '@'"),
        (lambda: Message(sender=("Ada", "a@x.org", "x")), "pair of two strings, not"),
        (lambda: Message(sender="a@x.org", to=[("a@x.org", "b@x.org")]), r"to\.0\n"),
    ],
)
def test_a_pair_that_is_not_name_and_email_says_so(build: Any, match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match) as caught:
        build()
    assert "valid dictionary or instance of Address" not in str(caught.value)


def test_two_addresses_in_to_are_still_two_recipients() -> None:
    message = Message(sender="a@x.org", to=("b@x.org", "c@x.org"))
    assert [a.email for a in message.to] == ["b@x.org", "c@x.org"]
