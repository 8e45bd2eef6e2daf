"""send_many's "stop everything" switch keeps the first error, once."""

from __future__ import annotations

from smtpkit import QuotaExceededError, SendResult
from smtpkit._bulk import _Halted


def test_the_first_error_wins_even_when_another_thread_halts_meanwhile():
    first = QuotaExceededError("first", results=[])
    second = QuotaExceededError("second", results=[])
    halted: _Halted

    def halt(result: SendResult) -> QuotaExceededError:
        # Another thread's result stopped the run while this one was judged.
        halted.error = first
        return second

    halted = _Halted(halt)
    halted.check(SendResult(envelope=None))
    assert halted.error is first
    halted.check(SendResult(envelope=None))  # stopped: not asked again
    assert halted.error is first
    unsent = halted.not_sent()
    assert unsent.attempts == 0
    assert "not sent: send_many stopped (first)" in str(unsent.error)
