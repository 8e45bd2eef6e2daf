"""FakeTransport, FileTransport and ConsoleTransport: transports without a network."""

from __future__ import annotations

import email
import email.policy
import io
import threading

import pytest

from smtpkit import (
    ClosedError,
    DataRefusedError,
    Envelope,
    Mailer,
    Message,
    RecipientResult,
    RecipientsRefusedError,
    RetryPolicy,
    SendResult,
    ServerDisconnectedError,
    SMTPReply,
    Transport,
)
from smtpkit.testing import (
    ConsoleTransport,
    FakeTransport,
    FileTransport,
    SentMessage,
    no_wait,
    reply,
)

ENV = Envelope(sender="me@example.com", recipients=["a@example.com", "b@example.com"])
DATA = (
    b"From: me@example.com\r\nTo: a@example.com\r\nSubject: =?utf-8?b?5L2g5aW9?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
)


def test_accepts_by_default_and_records():
    fake = FakeTransport()
    result = fake.send(ENV, DATA)
    assert result.ok
    assert result.accepted == ("a@example.com", "b@example.com")
    assert result.reply == SMTPReply(250, "OK")
    assert result.attempts == 1
    assert fake.attempts == [ENV]
    [sent] = fake.outbox
    assert isinstance(sent, SentMessage)
    assert sent.envelope == ENV
    assert sent.data == DATA
    assert sent.subject == "你好"
    assert sent.body().strip() == "hello"
    assert sent.body("html") == ""
    assert sent.recipients == ("a@example.com", "b@example.com")
    assert sent.message["To"] == "a@example.com"
    assert sent.result is result


@pytest.mark.parametrize(
    "outcome",
    [None, "250 2.0.0 queued as X1", SMTPReply(250, "queued as X1")],
)
def test_scripted_success(outcome):
    fake = FakeTransport.scripted(outcome)
    result = fake.send(ENV, DATA)
    assert result.ok
    if outcome is not None:
        assert result.reply is not None
        assert result.reply.text == "queued as X1"


def test_scripted_outcomes_in_order_then_accept():
    custom = SendResult.delivered(ENV, SMTPReply(250, "custom"))
    fake = FakeTransport.scripted(
        "451 4.3.0 busy", ServerDisconnectedError("gone"), custom
    )
    with pytest.raises(DataRefusedError) as info:
        fake.send(ENV, DATA)
    assert info.value.reply == reply("451 4.3.0 busy")
    assert info.value.is_transient
    assert info.value.command == "end of data"
    with pytest.raises(ServerDisconnectedError):
        fake.send(ENV, DATA)
    assert fake.send(ENV, DATA) is custom
    assert fake.send(ENV, DATA).reply == SMTPReply(250, "OK")
    assert len(fake.attempts) == 4
    assert len(fake.outbox) == 2


def test_permanent_reply_raises_data_refused():
    fake = FakeTransport.scripted(SMTPReply.from_string("554 5.7.1 spam"))
    with pytest.raises(DataRefusedError) as info:
        fake.send(ENV, DATA)
    assert not info.value.is_transient
    assert fake.outbox == []


def test_fail_next_then_accept():
    fake = FakeTransport()
    fake.fail_next(2)
    for _ in range(2):
        with pytest.raises(DataRefusedError, match=r"451 4\.3\.0 Try again later"):
            fake.send(ENV, DATA)
    assert fake.send(ENV, DATA).ok
    fake.fail_next(1, ServerDisconnectedError("lost"))
    with pytest.raises(ServerDisconnectedError):
        fake.send(ENV, DATA)


def test_handler_decides():
    seen: list[tuple[Envelope, bytes]] = []

    def handler(envelope: Envelope, data: bytes) -> str:
        seen.append((envelope, data))
        return "250 2.0.0 Ok: queued as ABC"

    fake = FakeTransport(handler)
    assert fake.send(ENV, DATA).reply == reply("250 2.0.0 Ok: queued as ABC")
    assert seen == [(ENV, DATA)]


def test_script_wins_over_handler():
    fake = FakeTransport(lambda envelope, data: "554 never")
    fake.fail_next(1, "452 4.3.1 full")
    with pytest.raises(DataRefusedError, match="452"):
        fake.send(ENV, DATA)
    with pytest.raises(DataRefusedError, match="554"):
        fake.send(ENV, DATA)


def test_refuse_some_recipients():
    fake = FakeTransport(refuse={"b@example.com": "550 5.1.1 no such user"})
    result = fake.send(ENV, DATA)
    assert result.accepted == ("a@example.com",)
    assert result.refused == {"b@example.com": reply("550 5.1.1 no such user")}
    assert not result.ok
    [sent] = fake.outbox
    assert sent.envelope.recipients == ("a@example.com",)


def test_refuse_everyone():
    refusal = SMTPReply.from_string("550 5.1.1 no")
    fake = FakeTransport(refuse={"a@example.com": refusal, "b@example.com": refusal})
    with pytest.raises(RecipientsRefusedError) as info:
        fake.send(ENV, DATA)
    assert set(info.value.refused) == {"a@example.com", "b@example.com"}
    assert fake.outbox == []
    assert fake.attempts == [ENV]


def test_handler_result_with_refused_recipient_not_in_outbox():
    def handler(envelope: Envelope, data: bytes) -> SendResult:
        refused = SMTPReply(451, "later")
        recipients = {r: RecipientResult(r, refused) for r in envelope.recipients}
        return SendResult(envelope=envelope, recipients=recipients)

    fake = FakeTransport(handler)
    assert fake.send(ENV, DATA).accepted == ()
    assert fake.outbox == []


def test_clear():
    fake = FakeTransport()
    fake.send(ENV, DATA)
    fake.clear()
    assert fake.outbox == []
    assert fake.attempts == []


def test_closed():
    fake = FakeTransport()
    fake.send(ENV, DATA)
    fake.close()
    fake.close()
    with pytest.raises(ClosedError):
        fake.send(ENV, DATA)
    assert len(fake.outbox) == 1  # still readable


def test_context_manager_closes():
    with FakeTransport() as fake:
        fake.send(ENV, DATA)
    with pytest.raises(ClosedError):
        fake.send(ENV, DATA)


def test_send_batch_returns_errors():
    fake = FakeTransport.scripted("451 4.3.0 busy")
    outcomes = fake.send_batch([(ENV, DATA), (ENV, DATA)])
    assert isinstance(outcomes[0], DataRefusedError)
    assert isinstance(outcomes[1], SendResult)
    assert outcomes[1].ok


def test_thread_safe_outbox():
    fake = FakeTransport()

    def work() -> None:
        for _ in range(50):
            fake.send(ENV, DATA)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.outbox) == 200
    assert len(fake.attempts) == 200


def test_testing_helpers():
    assert reply("451 4.3.0 later") == SMTPReply.from_string("451 4.3.0 later")
    policy = no_wait()
    assert (policy.wait_initial, policy.wait_max, policy.wait_jitter) == (0, 0, 0)
    assert policy.attempts == 3
    custom = no_wait(RetryPolicy(attempts=7, retry_ambiguous=True))
    assert custom.attempts == 7
    assert custom.retry_ambiguous
    assert custom.wait_max == 0


def test_file_transport_writes_eml(tmp_path):
    directory = tmp_path / "out" / "mail"
    with Mailer(transport=FileTransport(directory)) as mailer:
        result = mailer.send(
            Message(
                sender="me@example.com", to="you@example.com", subject="文件", text="x"
            )
        )
        mailer.send(Message(sender="me@example.com", to="you@example.com", text="y"))
    assert result.ok
    assert result.reply is not None
    assert result.reply.text.startswith("written to ")
    files = sorted(directory.glob("*.eml"))
    assert len(files) == 2
    written = result.reply.text.removeprefix("written to ")
    parsed = email.message_from_bytes(
        (directory / written).read_bytes(), policy=email.policy.default
    )
    assert parsed["Subject"] == "文件"
    with pytest.raises(ClosedError):
        mailer.transport.send(ENV, DATA)


def test_console_transport_prints():
    stream = io.StringIO()
    transport: Transport = ConsoleTransport(stream)
    result = transport.send(ENV, DATA)
    assert result.ok
    printed = stream.getvalue()
    assert printed.startswith(
        "MAIL FROM:<me@example.com> RCPT TO:a@example.com, b@example.com\n"
    )
    assert "Subject: =?utf-8?b?5L2g5aW9?=\nContent-Type" in printed
    assert "\r" not in printed
    assert printed.endswith("-" * 72 + "\n")


def test_console_transport_refuses_sends_after_close():
    transport = ConsoleTransport(io.StringIO())
    transport.close()
    with pytest.raises(ClosedError):
        transport.send(ENV, DATA)


def test_console_transport_defaults_to_stdout(capsys):
    ConsoleTransport().send(ENV, DATA)
    assert "MAIL FROM:<me@example.com>" in capsys.readouterr().out
