"""pydantic's validation modes reach every model, positional constructors included.

RateLimit, Envelope, Attachment and Address have their own ``__init__`` (for
positional arguments); pydantic used to call it for ``model_validate`` too, with
the raw input, so ``strict=``, ``context=`` and ``from_attributes=`` were dropped.
"""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Address, Attachment, Envelope, Message, RateLimit

# (model, input strict validation must refuse, the field it names)
STRICT_REFUSED = [
    (RateLimit, {"per_second": "10"}, "per_second"),
    (
        Envelope,
        {"sender": "a@x.org", "recipients": ("b@x.org",), "smtputf8": 1},
        "smtputf8",
    ),
    (Attachment, {"filename": "a.txt", "content": "text, not bytes"}, "content"),
    (Address, {"email": "a@x.org", "name": b"Ada"}, "name"),
    (
        Message,
        {"sender": "a@x.org", "attachments": ({"filename": "a", "content": "x"},)},
        "attachments.0.content",
    ),
    (Message, {"sender": {"email": "a@x.org", "name": b"Ada"}}, "sender.name"),
]


@pytest.mark.parametrize(("model", "data", "field"), STRICT_REFUSED)
def test_strict_validation_refuses_what_lax_validation_converts(
    model: type[pydantic.BaseModel], data: dict[str, Any], field: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(data, strict=True)
    assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [field]
    model.model_validate(data)  # lax: converted


@pytest.mark.parametrize(
    ("model", "json"),
    [
        (RateLimit, '{"per_second": "10"}'),
        (Envelope, '{"sender": "a@x.org", "recipients": ["b@x.org"], "smtputf8": 1}'),
        (
            Message,
            '{"sender": "a@x.org", "to": ["b@x.org"], "list_unsubscribe": '
            '["https://x.org/u"], "list_unsubscribe_one_click": "true"}',
        ),
    ],
)
def test_strict_json_validation_refuses_what_lax_validation_converts(
    model: type[pydantic.BaseModel], json: str
) -> None:
    with pytest.raises(pydantic.ValidationError):
        model.model_validate_json(json, strict=True)
    model.model_validate_json(json)


def test_strict_json_takes_arrays_where_the_field_is_a_tuple() -> None:
    message = Message(
        sender="a@x.org",
        to=["b@x.org", Address(email="c@x.org", name="Cé")],
        cc="d@x.org",
        attachments=[Attachment("a.txt", b"hi")],
        list_unsubscribe=["mailto:u@x.org", "https://x.org/u"],
    )
    dumped = message.model_dump_json()
    assert Message.model_validate_json(dumped, strict=True) == message
    envelope = Envelope("a@x.org", ["b@x.org", "c@x.org"], smtputf8=True)
    assert Envelope.model_validate_json(envelope.model_dump_json(), strict=True) == (
        envelope
    )
    # Python input stays strict: a list is not a tuple.
    with pytest.raises(pydantic.ValidationError, match="valid tuple"):
        Envelope.model_validate({"sender": "a@x.org", "recipients": ["b"]}, strict=True)


@given(st.floats(min_value=0.001, max_value=1e6), st.integers(1, 1000))
def test_strict_accepts_the_right_types(per_second: float, burst: int) -> None:
    data = {"per_second": per_second, "burst": burst}
    assert RateLimit.model_validate(data, strict=True) == RateLimit(
        per_second, burst=burst
    )
    assert RateLimit.model_validate_json(
        RateLimit(per_second).model_dump_json(), strict=True
    ) == RateLimit(per_second)


def _seeing_context(model: type[pydantic.BaseModel]) -> tuple[type[Any], list[Any]]:
    seen: list[Any] = []

    class Checked(model):  # type: ignore[misc, valid-type]
        @pydantic.model_validator(mode="after")
        def _record(self, info: pydantic.ValidationInfo) -> Any:
            seen.append(info.context)
            return self

    return Checked, seen


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (RateLimit, {"per_second": 2}),
        (Envelope, {"sender": "a@x.org", "recipients": "b@x.org"}),
        (Attachment, {"filename": "a.txt", "content": b"x"}),
        (Address, "Ada <a@x.org>"),
    ],
)
def test_context_reaches_validators(model: type[pydantic.BaseModel], data: Any) -> None:
    checked, seen = _seeing_context(model)
    checked.model_validate(data, context={"tenant": 7})
    json = model.model_validate(data).model_dump_json()
    checked.model_validate_json(json, context={"tenant": 8})
    assert seen == [{"tenant": 7}, {"tenant": 8}]


def test_from_attributes_reads_objects() -> None:
    class Row:
        per_second = 3
        burst = 2
        sender = "a@x.org"
        recipients = ("b@x.org",)
        smtputf8 = False

    assert RateLimit.model_validate(Row(), from_attributes=True) == RateLimit(
        3, burst=2
    )
    assert Envelope.model_validate(Row(), from_attributes=True) == Envelope(
        "a@x.org", "b@x.org"
    )


def test_positional_calls_still_work_after_validation_skips_the_init() -> None:
    assert RateLimit(10) == RateLimit.model_validate({"per_second": 10}, strict=True)
    assert Envelope("a@x.org", "b@x.org").recipients == ("b@x.org",)
    assert Attachment("a.txt", b"x").content_type == "text/plain"
    assert Address("Ada <a@x.org>").name == "Ada"
    with pytest.raises(TypeError, match="at most 1 positional"):
        RateLimit(1, 2)  # type: ignore[call-arg]
