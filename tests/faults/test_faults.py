"""Bulk sends through every smtp-sink fault mode keep the delivery invariant.

Each scenario (tests/faults/scenarios.py) runs ``Mailer.send_many`` over 200
messages with a pool of 4 and compares every result with smtp-sink's dump:

* intermittent: a router sends about half the connections to the faulty sink and
  the rest to a healthy one, so retries can succeed and one run mixes outcomes;
* always on: every connection meets the fault, so every message must fail, with
  exactly the typed error the fault calls for, after the right number of attempts.

The invariant: nothing silently dropped, every failure typed, nothing delivered
that was reported failed (unless ``delivery_unknown`` said so), no duplicate unless
``possibly_duplicated``.  ``benchmarks/reliability.py`` runs the same scenarios and
writes docs/reliability.md.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from smtpkit import (
    DataRefusedError,
    Envelope,
    SendResult,
    ServerDisconnectedError,
    SMTPReply,
    TransportError,
)

from .scenarios import SCENARIOS, Scenario, check_invariant, run_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BY_KEY = {s.key: s for s in SCENARIOS}
ATTEMPTS = 3  # the RetryPolicy run_scenario uses


def worth_retrying(error: TransportError, scenario: Scenario) -> bool:
    """Transient, and not an unknown outcome (unless the scenario retries those)."""
    ambiguous = error.delivery_unknown and not scenario.retry_ambiguous
    return error.is_transient and not ambiguous


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.key)
def test_intermittent_fault_keeps_the_invariant(
    scenario: Scenario, sink_directory: Path
) -> None:
    tally = run_scenario(scenario, sink_directory)

    assert tally.violations == []
    assert len(tally.results) == tally.tried == 200
    assert tally.delivered + tally.failed_total == tally.tried
    assert tally.delivered > 0  # the healthy path worked
    # The fault really fired: a failed result, a retry, or a connection lost.
    assert tally.failed_total > 0 or tally.attempts > tally.tried or tally.discarded
    if scenario.share is not None:
        assert tally.routed["faulty"] > 0
        assert tally.routed["healthy"] > 0
    if not scenario.retry_ambiguous:
        assert tally.duplicated == 0
        assert tally.flagged_possibly_duplicated == 0


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if s.share is not None], ids=lambda s: s.key
)
def test_always_on_fault_fails_every_message_with_its_error(
    scenario: Scenario, sink_directory: Path
) -> None:
    tally = run_scenario(scenario, sink_directory, messages=40, always=True)

    assert tally.violations == []
    assert tally.delivered == 0
    assert tally.failed_total == 40
    for result in tally.results:
        error = result.error
        assert isinstance(error, TransportError)
        assert result.attempts == error.attempts == len(error.history) + 1
        # Earlier attempts all failed with something worth retrying; the last
        # one ran out of attempts, or was not worth retrying.
        assert all(worth_retrying(e, scenario) for e in error.history)
        if worth_retrying(error, scenario):
            assert result.attempts == ATTEMPTS
        if len(scenario.expected) == 1:
            assert worth_retrying(error, scenario) == scenario.transient
    if scenario.dumps == "refused":
        # Dumped at the dot, then refused: once per attempt, none accepted.
        assert tally.refused_dumps == tally.attempts
        assert tally.on_server == 0
    elif scenario.dumps == "unknown":
        # Every message reached the server; the client says it cannot know.
        assert tally.on_server == 40
        assert tally.delivery_unknown == 40
    else:
        assert tally.on_server == 0


def test_ambiguous_window_is_reported_not_retried(sink_directory: Path) -> None:
    tally = run_scenario(BY_KEY["drop-dot"], sink_directory)

    assert tally.violations == []
    assert tally.delivery_unknown > 0
    unknown = [r for r in tally.results if r.error is not None]
    for result in unknown:
        assert isinstance(result.error, TransportError)
        assert result.error.delivery_unknown
        assert result.attempts == 1  # retry_ambiguous=False: never resent
    # Every message is on the server exactly once, flagged or not.
    assert tally.on_server == tally.tried
    assert tally.duplicated == 0


def test_retry_ambiguous_duplicates_are_all_flagged(sink_directory: Path) -> None:
    tally = run_scenario(BY_KEY["drop-dot-retry"], sink_directory)

    assert tally.violations == []
    assert tally.duplicated > 0  # the risk retry_ambiguous=True takes...
    assert tally.flagged_possibly_duplicated >= tally.duplicated  # ...is flagged
    assert tally.on_server == tally.tried
    flagged = [r for r in tally.results if r.possibly_duplicated]
    assert all(r.attempts > 1 for r in flagged)


@pytest.mark.parametrize("key", ["hard-rcpt", "hard-dot"])
def test_permanent_replies_are_never_retried(key: str, sink_directory: Path) -> None:
    tally = run_scenario(BY_KEY[key], sink_directory)

    assert tally.violations == []
    assert tally.failed_total > 0
    assert tally.attempts == tally.tried  # each message tried once


def test_transient_replies_are_retried_to_delivery(sink_directory: Path) -> None:
    tally = run_scenario(BY_KEY["421-mail"], sink_directory)

    assert tally.violations == []
    recovered = [r for r in tally.results if r.ok and r.attempts > 1]
    assert recovered  # a 421 on one connection, 250 on the next
    assert tally.duplicated == 0


def test_the_invariant_check_catches_every_breach() -> None:
    """The checker is not vacuous: each rule fires on a fabricated breach."""
    envelope = Envelope(sender="a@example.com", recipients=("b@example.net",))
    ids = [f"<{i}@t>" for i in range(7)]
    ok = SendResult.delivered(envelope)
    refused = DataRefusedError(SMTPReply(450, "busy"), command="end of data")
    results = [
        ok.with_updates(message_id=ids[0]),  # delivered, but not on the server
        SendResult(envelope, message_id=ids[1]),  # no reply, no error: dropped
        SendResult(envelope, message_id=ids[2], error=refused),  # yet accepted
        ok.with_updates(message_id=ids[3]),  # twice on the server, unflagged
        SendResult(  # the wrong error for this fault
            envelope, message_id=ids[4], error=ServerDisconnectedError("gone")
        ),
        SendResult(envelope, message_id=ids[5], error=refused),  # unknown, unflagged
        ok.with_updates(message_id=ids[5]),  # order lost
    ]
    accepted = collections.Counter({ids[2]: 1, ids[3]: 2, ids[6]: 1, "<x@t>": 1})
    unknown = collections.Counter({ids[5]: 1})

    problems = check_invariant(BY_KEY["soft-dot"], ids, results, accepted, unknown)

    text = "\n".join(problems)
    assert f"{ids[0]}: reported delivered but not on the server" in text
    assert f"{ids[1]}: not ok but no error (silently dropped)" in text
    assert f"{ids[2]}: reported failed but the server accepted it" in text
    assert f"{ids[3]}: on the server 2 times, not flagged" in text
    assert f"{ids[4]}: unexpected error ServerDisconnectedError" in text
    assert f"{ids[5]}: the server got it without replying" in text
    assert f"{ids[6]}: result is for {ids[5]} (order lost)" in text
    assert "1 messages on the server were never sent" in text
    # A flagged duplicate and an unknown outcome that says so are fine.
    flagged = ok.with_updates(message_id=ids[0], possibly_duplicated=True)
    unknown_error = ServerDisconnectedError("gone", delivery_unknown=True)
    said_so = SendResult(envelope, message_id=ids[1], error=unknown_error)
    assert check_invariant(
        BY_KEY["drop-dot-retry"],
        ids[:2],
        [flagged, said_so],
        collections.Counter({ids[0]: 1}),
        collections.Counter({ids[0]: 1, ids[1]: 1}),
    ) == [
        "message 1 <1@t>: unexpected error ServerDisconnectedError"
        " (delivery_unknown=True): gone"
    ]
