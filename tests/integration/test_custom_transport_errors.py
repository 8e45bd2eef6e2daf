"""A custom transport's errors reach the caller alike through every face.

A transport without its own ``send_batch`` gets ``Transport.send_batch``, which
``AsyncMailer`` (and ``Mailer.send_many``) go through, while ``Mailer.send``
calls ``send`` directly.  Whatever ``send`` raises must come out the same way:
an ``SMTPKitError`` unchanged (an ``InvalidMessageError`` is not a "delivery
unknown"), anything else as a ``TransportError`` with ``delivery_unknown=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typing_extensions import override

import smtpkit
from smtpkit import (
    ConfigurationError,
    Envelope,
    InvalidMessageError,
    Message,
    RetryPolicy,
    SendResult,
    SMTPKitError,
    Transport,
    TransportError,
)

pytestmark = pytest.mark.integration

# Retries allowed, ambiguous ones included: none of these errors may be retried.
RETRY = RetryPolicy(attempts=3, retry_ambiguous=True, wait_initial=0, wait_jitter=0)


class RaisingTransport(Transport):
    """A user's transport whose ``send`` raises; it keeps the default send_batch.

    Thread-safe enough for tests: it only appends to a list.
    """

    def __init__(self, error: Callable[[], Exception]) -> None:
        self.error = error
        self.calls: list[Envelope] = []

    @override
    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        self.calls.append(envelope)
        raise self.error()


CASES: dict[str, tuple[Callable[[], Exception], type[SMTPKitError], bool]] = {
    # name: (what send raises, what the caller gets, delivery_unknown)
    "invalid-message": (
        lambda: InvalidMessageError("exceeds this relay's 10 MB limit"),
        InvalidMessageError,
        False,
    ),
    "configuration": (
        lambda: ConfigurationError("this relay needs a client certificate"),
        ConfigurationError,
        False,
    ),
    "transport-error": (
        lambda: TransportError("the relay said no"),
        TransportError,
        False,
    ),
    "not-smtpkit": (
        lambda: ValueError("a bug in the transport"),
        TransportError,
        True,
    ),
}


def _message(i: int = 0) -> Message:
    return Message(
        sender="a@example.com", to=f"b{i}@example.com", subject=f"m{i}", text="x"
    )


def _check(error: BaseException, case: str) -> None:
    raised, expected, unknown = CASES[case]
    assert type(error) is expected
    assert getattr(error, "delivery_unknown", False) is unknown
    original = raised()
    if isinstance(original, SMTPKitError):
        assert str(error) == str(original)  # the transport's own error, unchanged
    else:
        assert isinstance(error.__cause__, type(original))
        assert str(original) in str(error)


@pytest.mark.parametrize("case", list(CASES))
def test_send_raises_what_the_transport_raised(make_mailer, case: str) -> None:
    transport = RaisingTransport(CASES[case][0])
    with (
        make_mailer(transport=transport, retry=RETRY, sleep=lambda s: None) as mailer,
        pytest.raises(Exception) as info,
    ):
        mailer.send(_message())
    _check(info.value, case)
    assert len(transport.calls) == 1  # one attempt: not retried


@pytest.mark.parametrize("case", list(CASES))
def test_send_many_reports_what_the_transport_raised(make_mailer, case: str) -> None:
    transport = RaisingTransport(CASES[case][0])
    with make_mailer(transport=transport, retry=RETRY, sleep=lambda s: None) as mailer:
        results = mailer.send_many([_message(i) for i in range(3)])
    assert [r.envelope.recipients for r in results if r.envelope] == [
        ("b0@example.com",),
        ("b1@example.com",),
        ("b2@example.com",),
    ]
    for result in results:
        assert result.error is not None
        assert not result.ok
        assert not result.accepted
        _check(result.error, case)
        with pytest.raises(type(result.error)):
            result.raise_for_error()
    assert len(transport.calls) == 3  # one attempt each


def test_the_default_send_batch_passes_smtpkit_errors_through() -> None:
    errors = iter(
        [
            InvalidMessageError("too big"),
            smtpkit.ClosedError("closed"),
            ValueError("bug"),
        ]
    )
    transport = RaisingTransport(lambda: next(errors))
    envelope = Envelope("a@example.com", ("b@example.com",))
    seen: list[tuple[int, SendResult | SMTPKitError]] = []
    outcomes = transport.send_batch(
        [(envelope, b"x\r\n")] * 3, on_result=lambda i, o: seen.append((i, o))
    )
    assert [type(o) for o in outcomes] == [
        InvalidMessageError,
        smtpkit.ClosedError,
        TransportError,
    ]
    assert isinstance(outcomes[2], TransportError)
    assert outcomes[2].delivery_unknown
    assert seen == list(enumerate(outcomes))
