"""What Mailer accepts: legacy stdlib messages, wrong constructor arguments, CRLF data,
transports that size send_many or predate send_batch(on_result=)."""

from __future__ import annotations

import email
import email.policy
import io
import threading
import time
from collections.abc import Sequence
from email.message import Message as MIMEMessage
from email.mime.text import MIMEText

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import (
    BulkProgress,
    Envelope,
    InvalidMessageError,
    Mailer,
    Message,
    RetryPolicy,
    SendResult,
    SMTPConfig,
    SMTPKitError,
    Transport,
)
from smtpkit.testing import ConsoleTransport, FakeTransport

ENVELOPE = Envelope(sender="a@example.com", recipients=["b@example.com"])


# -- constructor arguments ----------------------------------------------------------


def test_a_transport_passed_positionally_says_to_use_transport_keyword():
    with pytest.raises(TypeError, match=r"pass transport=FakeTransport\(\.\.\.\)"):
        Mailer(FakeTransport())  # type: ignore[arg-type]  # the mistake under test


def test_a_url_string_says_to_build_a_config_from_it():
    with pytest.raises(TypeError, match=r"SMTPConfig\.from_url"):
        Mailer("smtp://localhost:1025")  # type: ignore[arg-type]  # the mistake


def test_another_object_as_config_names_its_type():
    with pytest.raises(TypeError, match=r"not dict.*SMTPConfig\(host=\.\.\.\)"):
        Mailer({"host": "x"})  # type: ignore[arg-type]  # the mistake under test


@pytest.mark.parametrize(
    ("transport", "match"),
    [
        (SMTPConfig(host="localhost", tls="none"), r"Mailer\(config\)"),
        ("smtp://x", r"not str"),
    ],
)
def test_a_wrong_transport_says_what_a_transport_is(transport, match):
    with pytest.raises(TypeError, match=match):
        Mailer(transport=transport)


# -- legacy email.message.Message -----------------------------------------------------


def send(message: object, envelope: Envelope | None = None) -> FakeTransport:
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        mailer.send(message, envelope=envelope)  # type: ignore[arg-type]
    return fake


def test_a_mime_text_is_sent_with_bcc_stripped():
    msg = MIMEText("hello", "plain", "utf-8")
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    msg["Bcc"] = "secret@example.com"
    fake = send(msg)
    [sent] = fake.outbox
    assert sent.envelope.recipients == ("b@example.com", "secret@example.com")
    assert b"secret@" not in sent.data
    assert "Bcc" in msg  # the caller's message is untouched
    assert sent.data.endswith(b"\r\n")


def test_raw_utf8_parsed_into_a_legacy_message_asks_for_smtputf8():
    msg = email.message_from_bytes(
        "From: a@example.com\nTo: b@example.com\nSubject: Grüße\n\nx".encode()
    )
    [attempt] = send(msg).attempts
    assert attempt.smtputf8


def test_unicode_set_on_a_legacy_message_is_encoded_not_sent_raw():
    msg = MIMEText("x", "plain", "utf-8")
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    msg["Subject"] = "Grüße"
    fake = send(msg)
    assert not fake.attempts[0].smtputf8
    assert b"Subject: =?utf-8?" in fake.outbox[0].data
    assert fake.outbox[0].message["Subject"] == "Grüße"


@pytest.mark.parametrize(
    "value",
    ["x\r\nBcc: evil@example.com", "x\nX-Injected: 1", "x\x0bY: 1", "x\u2028Y: 1"],
)
def test_a_line_break_in_a_legacy_header_is_refused(value):
    msg = MIMEText("x")
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    msg["Subject"] = value
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        with pytest.raises(InvalidMessageError, match="Subject"):
            mailer.send(msg)
    assert fake.attempts == []


def test_a_long_address_list_is_read_in_linear_time():
    # Compared with a list four times shorter, not against the clock: linear
    # reading takes about 4x as long, quadratic about 16x, whatever the load.
    def best_time(count: int) -> float:
        msg = MIMEText("x")
        msg["From"] = "a@example.com"
        msg["To"] = ", ".join(f"user{i}@example.com" for i in range(count))
        times = []
        for _ in range(3):  # CPU time, the best of three: other processes' load
            start = time.process_time()  # does not count, as wall time would
            [sent] = send(msg).outbox
            times.append(time.process_time() - start)
        assert len(sent.envelope.recipients) == count
        return min(times)

    assert best_time(1600) < 9 * best_time(400)


def test_legacy_messages_are_accepted_by_send_many():
    msgs = []
    for i in range(3):
        msg = MIMEText(f"body {i}")
        msg["From"] = "a@example.com"
        msg["To"] = f"r{i}@example.com"
        msgs.append(msg)
    fake = FakeTransport()
    with Mailer(transport=fake) as mailer:
        results = mailer.send_many([*msgs, (msgs[0], ENVELOPE)])
    assert all(r.ok for r in results)
    assert [r.envelope.recipients for r in results if r.envelope] == [
        ("r0@example.com",),
        ("r1@example.com",),
        ("r2@example.com",),
        ("b@example.com",),
    ]


HEADER_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=120
)


@settings(max_examples=150, deadline=None)
@given(subject=HEADER_TEXT, name=HEADER_TEXT, extra=HEADER_TEXT)
def test_a_legacy_message_is_refused_or_arrives_with_its_own_fields(
    subject, name, extra
):
    msg = MIMEText("body")
    msg["From"] = "a@example.com"
    msg["To"] = f'"{name}" <b@example.com>' if name else "b@example.com"
    msg["Subject"] = subject
    msg["X-Extra"] = extra
    fake = FakeTransport()
    with Mailer(transport=fake, retry=RetryPolicy.never()) as mailer:
        try:
            mailer.send(msg)
        except InvalidMessageError:
            assert fake.attempts == []
            return
    [sent] = fake.outbox
    assert sent.envelope.recipients == ("b@example.com",)
    parsed = email.message_from_bytes(sent.data, policy=email.policy.default)
    assert [k.lower() for k in parsed] == [k.lower() for k in msg]
    assert [a.addr_spec for a in parsed["To"].addresses] == ["b@example.com"]
    assert all(len(line) <= 998 for line in sent.data.split(b"\r\n"))


# -- CRLF at the end of the data ----------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Message(sender="a@example.com", to="b@example.com", text="no newline"),
        Message(sender="a@example.com", to="b@example.com", html="<p>x</p>", text="x"),
        b"Subject: raw\n\nbare LF, no newline",
    ],
)
def test_every_path_hands_the_transport_data_ending_in_crlf(message):
    fake = send(message, None if isinstance(message, Message) else ENVELOPE)
    data = fake.outbox[0].data
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n")


def test_console_transport_puts_the_separator_on_a_line_of_its_own():
    stream = io.StringIO()
    with Mailer(transport=ConsoleTransport(stream)) as mailer:
        mailer.send(Message(sender="a@example.com", to="b@example.com", text="last"))
    assert stream.getvalue().endswith("\nlast\n" + "-" * 72 + "\n")
    direct = io.StringIO()
    ConsoleTransport(direct).send(ENVELOPE, b"Subject: x\r\n\r\nno end")
    assert direct.getvalue().endswith("no end\n" + "-" * 72 + "\n")


# -- transports and send_many -------------------------------------------------------------


class Sized(FakeTransport):
    """A fake that asks for three threads and notes how many ran at once."""

    def __init__(self) -> None:
        super().__init__(handler=self._slow)
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    @property
    def max_concurrency(self) -> int:
        return 3

    def _slow(self, envelope: Envelope, data: bytes) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1


def test_send_many_runs_as_many_threads_as_the_transport_asks_for():
    transport = Sized()
    msgs = [Message(sender="a@example.com", to=f"r{i}@example.com") for i in range(12)]
    with Mailer(transport=transport) as mailer:
        assert len(mailer.send_many(msgs)) == 12
    assert transport.most == 3
    with Mailer(transport=Sized()) as mailer:
        mailer.send_many(msgs, concurrency=1)
        assert mailer.transport.most == 1  # type: ignore[attr-defined]


def test_the_default_transport_concurrency_is_the_default_pool_size():
    assert FakeTransport().max_concurrency == 4


@pytest.mark.parametrize("bad", [0, -1, 2.5, None])
def test_a_transport_asking_for_no_threads_is_a_configuration_error(bad):
    class Broken(FakeTransport):
        @property
        def max_concurrency(self) -> int:
            return bad  # type: ignore[no-any-return]

    with Mailer(transport=Broken()) as mailer:
        with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
            mailer.send_many([])


class OldStyle(Transport):
    """A third-party transport whose send_batch predates on_result."""

    def __init__(self) -> None:
        self.batches = 0

    def send(self, envelope: Envelope, data: bytes) -> SendResult:
        return SendResult.delivered(envelope)

    def send_batch(  # type: ignore[override]  # the old signature under test
        self, items: Sequence[tuple[Envelope, bytes]]
    ) -> list[SendResult | SMTPKitError]:
        self.batches += 1
        return [self.send(envelope, data) for envelope, data in items]


def test_a_transport_without_on_result_still_reports_every_message():
    transport = OldStyle()
    progress: list[BulkProgress] = []
    msgs = [Message(sender="a@example.com", to=f"r{i}@example.com") for i in range(40)]
    with Mailer(transport=transport) as mailer:
        results = mailer.send_many(msgs, concurrency=2, on_progress=progress.append)
    assert all(r.ok for r in results)
    assert transport.batches >= 2
    assert [p.done for p in progress] == list(range(1, 41))
    assert progress[-1].total == 40


def test_the_default_send_batch_reports_each_outcome_as_it_goes():
    fake = FakeTransport.scripted(None, "550 5.1.1 no", None)
    seen: list[tuple[int, object]] = []
    outcomes = fake.send_batch(
        [(ENVELOPE, b"x\r\n")] * 3, on_result=lambda i, o: seen.append((i, o))
    )
    assert [i for i, _ in seen] == [0, 1, 2]
    assert [o for _, o in seen] == outcomes
    assert isinstance(outcomes[1], SMTPKitError)


def test_a_misreporting_transport_cannot_lose_or_repeat_a_message():
    class Chatty(FakeTransport):
        def send_batch(self, items, *, on_result=None):
            outcomes = super().send_batch(items)
            if on_result is not None:
                on_result(99, outcomes[0])  # out of range: ignored
                for index, outcome in enumerate(outcomes):
                    on_result(index, outcome)
                    on_result(index, outcome)  # twice: the first one counts
                on_result(0, "not an outcome")
            return outcomes

    progress: list[BulkProgress] = []
    msgs = [Message(sender="a@example.com", to=f"r{i}@example.com") for i in range(5)]
    with Mailer(transport=Chatty()) as mailer:
        results = mailer.send_many(msgs, concurrency=1, on_progress=progress.append)
    assert all(r.ok for r in results)
    assert [p.done for p in progress] == [1, 2, 3, 4, 5]


def test_legacy_message_type_is_part_of_sendable():
    msg: MIMEMessage = MIMEText("x")
    msg["From"] = "a@example.com"
    msg["To"] = "b@example.com"
    assert send(msg).outbox


# -- Message-ID domain ----------------------------------------------------------------------


def test_generated_message_ids_use_the_mailer_domain_not_the_senders():
    fake = FakeTransport()
    with Mailer(transport=fake, message_id_domain="mail.example.com") as mailer:
        result = mailer.send(Message(sender="me@gmail.com", to="b@example.com"))
        own = mailer.send(
            Message(sender="me@gmail.com", to="b@example.com", message_id="<x@y.z>")
        )
    assert result.message_id is not None
    assert result.message_id.endswith("@mail.example.com>")
    assert "gmail" not in fake.outbox[0].message["Message-ID"]
    assert own.message_id == "<x@y.z>"  # a message's own id wins


def test_a_unicode_message_id_domain_is_idna_encoded():
    fake = FakeTransport()
    with Mailer(transport=fake, message_id_domain="bücher.example") as mailer:
        result = mailer.send(Message(sender="a@example.com", to="b@example.com"))
    assert result.message_id is not None
    assert result.message_id.endswith("@xn--bcher-kva.example>")


@pytest.mark.parametrize(
    "domain",
    ["", "a..b", "-a.example", "a-.example", "x" * 64 + ".com", "a b.com",
     "a\r\nBcc: x@y.z", "a@b.com", "<a.com>", "a." * 130 + "com"],
)  # fmt: skip
def test_a_message_id_domain_that_is_no_domain_is_refused(domain):
    with pytest.raises(ValueError, match="message_id_domain must be a domain name"):
        Mailer(transport=FakeTransport(), message_id_domain=domain)


@given(st.text(max_size=40))
def test_any_accepted_message_id_domain_makes_a_valid_header(domain):
    try:
        mailer = Mailer(transport=FakeTransport(), message_id_domain=domain)
    except ValueError:
        return
    with mailer:
        result = mailer.send(Message(sender="a@example.com", to="b@example.com"))
    assert result.message_id is not None
    assert result.message_id.isascii()
    assert all(c not in result.message_id for c in " \r\n\t")
