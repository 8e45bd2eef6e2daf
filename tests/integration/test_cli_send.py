"""``smtpkit send`` end to end against aiosmtpd: what the server received, and exit codes."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest

from .clirunner import Cli, cli_fixture, run_inline  # noqa: F401 - the fixture
from .smtpd import USERS, check_password, free_port

pytestmark = pytest.mark.integration


def plain_url(server) -> str:
    return f"smtp://{server.host}:{server.port}?tls=none&timeout=5"


def send_from_me(server, *options: str) -> list[str]:
    """``smtpkit send``'s arguments: to *server*, from me@example.com, *options*."""
    return ["send", plain_url(server), "--from", "me@example.com", *options]


def parsed(received) -> email.message.EmailMessage:
    return email.message_from_bytes(received.data, policy=email.policy.default)


def test_send_text_file(cli: Cli, start_server, tmp_path: Path):
    server = start_server()
    body = tmp_path / "body.txt"
    body.write_text("Grüße from the command line\n", encoding="utf-8")
    run = cli(
        send_from_me(
            server,
            "--to",
            "you@example.com",
            "--bcc",
            "hidden@example.com",
            "--subject",
            "CLI test",
            "--text",
            str(body),
        )
    )
    assert run.code == 0, run.both
    [received] = server.messages
    assert received.mail_from == "me@example.com"
    assert received.rcpt_tos == ["you@example.com", "hidden@example.com"]
    message = parsed(received)
    assert message["Subject"] == "CLI test"
    assert "Bcc" not in message
    assert b"hidden@example.com" not in received.data
    assert (
        message.get_content().replace("\r\n", "\n") == "Grüße from the command line\n"
    )
    assert "accepted you@example.com: 250" in run.out
    assert "accepted hidden@example.com: 250" in run.out
    assert "Q1" in run.out  # the queue id of the end-of-data reply


def test_send_text_from_stdin(cli: Cli, start_server):
    server = start_server()
    run = cli(
        send_from_me(
            server, "--to", "you@example.com", "--subject", "piped", "--text", "-"
        ),
        stdin=b"from a pipe\n",
    )
    assert run.code == 0, run.both
    content = parsed(server.messages[0]).get_content()
    assert content.replace("\r\n", "\n") == "from a pipe\n"


def test_send_html_and_attachment(cli: Cli, start_server, tmp_path: Path):
    server = start_server()
    (tmp_path / "body.html").write_text("<p>Hello <b>HTML</b></p>", encoding="utf-8")
    (tmp_path / "body.txt").write_text("Hello text", encoding="utf-8")
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 \x00\xff binary")
    run = cli(
        send_from_me(
            server,
            "--to",
            "you@example.com",
            "--cc",
            "boss@example.com",
            "--subject",
            "Report",
            "--text",
            str(tmp_path / "body.txt"),
            "--html",
            str(tmp_path / "body.html"),
            "--attach",
            str(report),
        )
    )
    assert run.code == 0, run.both
    message = parsed(server.messages[0])
    assert message["Cc"] == "boss@example.com"
    assert (
        message.get_body(("html",)).get_content().strip() == "<p>Hello <b>HTML</b></p>"
    )
    assert message.get_body(("plain",)).get_content().strip() == "Hello text"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 \x00\xff binary"


def test_send_eml_with_explicit_envelope(cli: Cli, start_server, tmp_path: Path):
    server = start_server()
    eml = tmp_path / "saved.eml"
    eml.write_bytes(
        b"From: Someone <someone@example.org>\nTo: list@example.org\n"
        b"Bcc: secret@example.org\nSubject: saved earlier\n"
        b"Message-ID: <saved-1@example.org>\n\nThe body.\n"
    )
    run = cli(
        [
            "send",
            plain_url(server),
            "--eml",
            str(eml),
            "--from",
            "bounce@example.com",
            "--to",
            "real@example.com",
        ]
    )
    assert run.code == 0, run.both
    [received] = server.messages
    assert received.mail_from == "bounce@example.com"
    assert received.rcpt_tos == ["real@example.com"]
    message = parsed(received)
    assert message["Subject"] == "saved earlier"
    assert "Bcc" not in message  # never transmitted, as for every message
    assert received.data.endswith(b"The body.\r\n")
    assert "<saved-1@example.org>" in run.out


def test_send_eml_needs_the_envelope(cli: Cli, start_server, tmp_path: Path):
    server = start_server()
    eml = tmp_path / "saved.eml"
    eml.write_bytes(b"From: a@example.org\nTo: b@example.org\n\nbody\n")
    run = cli(["send", plain_url(server), "--eml", str(eml), "--from", "a@example.org"])
    assert run.code == 2
    assert "--eml needs the envelope" in run.err
    assert server.messages == []


def test_partial_refusal_prints_each_recipient_and_exits_1(cli: Cli, start_server):
    server = start_server()
    server.handler.rcpt_replies["nobody@example.com"] = "550 5.1.1 no such user"
    run = cli(
        send_from_me(
            server,
            "--to",
            "you@example.com",
            "--to",
            "nobody@example.com",
            "--subject",
            "s",
        )
    )
    assert run.code == 1, run.both
    assert "accepted you@example.com: 250" in run.out
    assert "refused  nobody@example.com: 550 5.1.1 no such user" in run.out
    assert server.messages[0].rcpt_tos == ["you@example.com"]


def test_every_recipient_refused_exits_1(cli: Cli, start_server):
    server = start_server()
    server.handler.rcpt_replies["nobody@example.com"] = "550 5.1.1 no such user"
    run = cli(send_from_me(server, "--to", "nobody@example.com", "--subject", "s"))
    assert run.code == 1, run.both
    assert "every recipient refused" in run.out
    assert "refused  nobody@example.com: 550 5.1.1 no such user" in run.out
    assert server.messages == []


def test_jsonl_sends_each_line_quietly_when_not_a_tty(cli: Cli, start_server, tmp_path):
    server = start_server()
    lines = [
        {"to": [f"user{n}@example.com"], "subject": f"number {n}", "text": f"hi {n}"}
        for n in range(5)
    ]
    lines[2]["sender"] = "other@example.com"
    path = tmp_path / "batch.jsonl"
    path.write_text(
        "\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8"
    )
    run = cli(send_from_me(server, "--jsonl", str(path)))
    assert run.code == 0, run.both
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [
        f"user{n}@example.com" for n in range(5)
    ]
    senders = {m.rcpt_tos[0]: m.mail_from for m in server.messages}
    assert senders["user2@example.com"] == "other@example.com"
    assert senders["user0@example.com"] == "me@example.com"
    assert "message 5/5" in run.out
    assert "\r" not in run.err  # no progress display without a terminal


def test_jsonl_with_a_bad_line_sends_nothing(cli: Cli, start_server, tmp_path):
    server = start_server()
    path = tmp_path / "batch.jsonl"
    path.write_text(
        '{"to": ["a@example.com"], "text": "ok"}\n{"to": ["not an address"]}\n',
        encoding="utf-8",
    )
    run = cli(send_from_me(server, "--jsonl", str(path)))
    assert run.code == 2
    assert "line 2" in run.err
    assert server.messages == []


def test_jsonl_takes_no_recipient_options(cli: Cli, start_server, tmp_path):
    server = start_server()
    path = tmp_path / "batch.jsonl"
    path.write_text('{"to": ["a@example.com"], "text": "ok"}\n', encoding="utf-8")
    run = cli(
        ["send", plain_url(server), "--jsonl", str(path), "--to", "b@example.com"]
    )
    assert run.code == 2
    assert "--jsonl takes the recipients from each line" in run.err


def test_credentials_from_smtp_environment_variables(
    cli: Cli, start_server, server_tls_context, ca_file
):
    server = start_server(
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
        auth_required=True,
    )
    env = {
        "SMTP_URL": f"smtp://{server.host}:{server.port}?ca_file={ca_file}&timeout=5",
        "SMTP_USERNAME": "alice",
        "SMTP_PASSWORD": USERS["alice"],
    }
    run = cli(
        [
            "send",
            "--from",
            "me@example.com",
            "--to",
            "you@example.com",
            "--subject",
            "env",
        ],
        env=env,
    )
    assert run.code == 0, run.both
    [received] = server.messages
    assert received.login == "alice"
    assert received.tls
    assert USERS["alice"] not in run.both


def test_refused_port_exits_3(cli: Cli):
    run = cli(
        [
            "send",
            f"smtp://127.0.0.1:{free_port()}?tls=none&timeout=5",
            "--from",
            "me@example.com",
            "--to",
            "you@example.com",
        ]
    )
    assert run.code == 3, run.both
    assert "connection refused" in run.out
    assert "what to do: check the host and port" in run.err


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["send", "--from", "a@example.com", "--to", "b@example.com"], "set $SMTP_URL"),
        (["send", "ftp://host", "--from", "a@example.com"], "smtp:// or smtps://"),
        (
            ["send", "smtp://h?tls=none", "--to", "b@example.com"],
            "--from ADDRESS is required",
        ),
        (["send", "smtp://h?tls=none", "--from", "not-an-address"], "sender"),
        (
            [
                "send",
                "smtp://h?tls=none",
                "--from",
                "a@example.com",
                "--text",
                "/nonexistent",
            ],
            "cannot read /nonexistent",
        ),
        (
            [
                "send",
                "smtp://h?tls=none",
                "--from",
                "a@example.com",
                "--eml",
                "x.eml",
                "--subject",
                "s",
            ],
            "--eml and --jsonl take no --subject",
        ),
    ],
)
def test_configuration_mistakes_exit_2_before_connecting(cli: Cli, args, sentence):
    run = cli(args)
    assert run.code == 2, run.both
    assert sentence in run.err


def test_jsonl_shows_progress_on_a_terminal(start_server, tmp_path):
    server = start_server()
    path = tmp_path / "batch.jsonl"
    path.write_text(
        "".join(f'{{"to": ["u{n}@example.com"], "text": "{n}"}}\n' for n in range(3)),
        encoding="utf-8",
    )
    run = run_inline(
        ["send", plain_url(server), "--jsonl", str(path), "--from", "me@example.com"],
        tty=True,
    )
    assert run.code == 0, run.both
    assert "\r\x1b[Ksent 3/3, failed 0" in run.err
    assert run.err.count("message") == 0  # results go to stdout, progress to stderr
    assert len(server.messages) == 3


def test_a_message_refused_after_data_exits_1(start_server, tmp_path):
    """The end of data refused: the message failed, recipients had been accepted."""
    server = start_server()
    server.handler.queue("EOD", "554 5.6.0 content rejected")
    path = tmp_path / "batch.jsonl"
    path.write_text('{"to": ["a@example.com"], "text": "x"}\n', encoding="utf-8")
    run = run_inline(
        ["send", plain_url(server), "--jsonl", str(path), "--from", "me@example.com"]
    )
    assert run.code == 1, run.both
    assert "failed: " in run.out
    assert "554 5.6.0 content rejected" in run.out


def test_ctrl_c_exits_130(start_server, monkeypatch):
    server = start_server()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("smtpkit._cli.send.Mailer.send_iter", interrupted)
    run = run_inline(
        ["send", plain_url(server), "--from", "me@example.com", "--to", "b@example.com"]
    )
    assert run.code == 130
    assert "interrupted" in run.err


def test_more_configuration_mistakes_exit_2(cli: Cli, start_server, tmp_path):
    server = start_server()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Grüße".encode("latin-1"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    base = ["send", plain_url(server), "--from", "me@example.com"]
    run = cli([*base, "--to", "b@example.com", "--text", str(latin1)])
    assert (run.code, f"{latin1} is not UTF-8 text" in run.err) == (2, True), run.both
    run = cli([*base, "--jsonl", str(empty)])
    assert (run.code, "holds no messages" in run.err) == (2, True), run.both
    run = cli(
        [*base, "--to", "b@example.com"], env={"SMTP_PASSWORD": "lonely-password"}
    )
    assert (run.code, "a password needs a user name" in run.err) == (2, True), run.both
    assert "lonely-password" not in run.both
    assert server.messages == []


def test_eml_without_message_id(cli: Cli, start_server, tmp_path):
    server = start_server()
    eml = tmp_path / "plain.eml"
    eml.write_bytes(b"From: a@example.org\r\nSubject: no id\r\n\r\nbody\r\n")
    run = cli(
        ["send", plain_url(server), "--eml", str(eml), "--from", "a@example.org",
         "--to", "b@example.org"]
    )  # fmt: skip
    assert run.code == 0, run.both
    assert "message: sent: 250" in run.out
    assert (
        server.messages[0].data
        == b"From: a@example.org\r\nSubject: no id\r\n\r\nbody\r\n"
    )
