"""``smtpkit`` CLI fixes from the fix-11a review, run as real subprocesses.

Ctrl-C keeps the results of messages already accepted; a dropped connection
after the data is "delivery unknown" (exit 1), not a connect failure; every
--jsonl line is rendered before the first send; argparse errors hide URLs;
a refused STARTTLS exits 3; odd input is a usage error, never a traceback;
--inline takes any file name.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smtpkit._bulk import NotSentError
from smtpkit._cli import _compose, send
from smtpkit._cli._output import Output
from smtpkit._transports.base import SendResult

from .clirunner import _CLEAN_ENV, Cli, cli_fixture, run_inline, run_subprocess  # noqa: F401 - the fixture
from .rawserver import RawConn, RawServer

pytestmark = pytest.mark.integration

FROM = ["--from", "a@example.com"]


def url(server: RawServer, query: str = "tls=none&timeout=5") -> str:
    return f"smtp://{server.host}:{server.port}?{query}"


def jsonl(tmp_path: Path, *lines: dict[str, object]) -> str:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    return str(path)


def mail_server(on_data, datas: list[bytes] | None = None):
    """A server that runs *on_data(conn, data)* for each message's end of data."""

    def script(conn: RawConn) -> None:
        conn.send(b"220 hi\r\n")
        while line := conn.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.send(b"250-x\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                conn.send(b"354 go\r\n")
                data = conn.read_data() or b""
                if datas is not None:
                    datas.append(data)
                if not on_data(conn, data):
                    return
            elif verb == b"QUIT":
                conn.send(b"221 bye\r\n")
                return
            else:
                conn.send(b"250 ok\r\n")

    return script


def data_commands(server: RawServer) -> int:
    return sum(line.startswith(b"DATA") for c in server.connections for line in c.lines)


# -- 2. Ctrl-C: every result is printed, then exit 130 ---------------------------------


@pytest.mark.timeout(60)
def test_ctrl_c_prints_the_messages_accepted_meanwhile(tmp_path) -> None:
    accepted = threading.Semaphore(0)
    slow_started = threading.Event()

    def on_data(conn: RawConn, data: bytes) -> bool:
        if b"Subject: slow" in data:
            slow_started.set()
            conn.sleep(3)  # the reply comes after the Ctrl-C
        else:
            accepted.release()
        conn.send(b"250 queued\r\n")
        return True

    subjects = ("slow", "two", "three", "four")
    batch = jsonl(
        tmp_path,
        *({"to": ["b@example.com"], "subject": s, "text": "x"} for s in subjects),
    )
    with RawServer(mail_server(on_data)) as server:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smtpkit",
                "send",
                url(server, "tls=none&timeout=10"),
                "--jsonl",
                batch,
                *FROM,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_CLEAN_ENV,
        )
        try:
            assert slow_started.wait(20)
            for _ in range(3):
                assert accepted.acquire(timeout=20)
            time.sleep(0.2)  # the client reads the three 250s
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    text, errors = out.decode(), err.decode()
    assert proc.returncode == 130, errors
    assert "Traceback" not in errors
    # Message 1 was on the wire: waited for; 2-4 were accepted before the
    # Ctrl-C but not yet printed (results come in input order).
    for number in range(1, 5):
        assert f"message {number}/4 " in text, text
    assert text.count(": sent: 250 queued") == 4, text
    assert "interrupted: 4 of 4 message(s) reported above" in errors


def test_ctrl_c_before_its_turn_reports_not_sent(tmp_path, monkeypatch) -> None:
    # In-process: the stream is interrupted with messages never handed over.
    def on_data(conn: RawConn, data: bytes) -> bool:
        conn.send(b"250 queued\r\n")
        return True

    real = send.Mailer.send_iter

    def interrupting(self, items, **kwargs):
        stream = real(self, items, **kwargs)
        first = next(stream)

        class Interrupted:
            leftover = stream.leftover

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.__exit__(*exc)
                Interrupted.leftover = stream.leftover

            def __iter__(self):
                yield first
                raise KeyboardInterrupt

        return Interrupted()

    monkeypatch.setattr(send.Mailer, "send_iter", interrupting)
    lines = [{"to": ["b@example.com"], "text": str(n)} for n in range(40)]
    with RawServer(mail_server(on_data)) as server:
        run = run_inline(
            ["send", url(server), "--jsonl", jsonl(tmp_path, *lines), *FROM]
        )
    assert run.code == 130, run.both
    assert "message 1/40" in run.out
    assert "message 40/40" in run.out
    assert "interrupted: 40 of 40" in run.err


# -- 3. delivery unknown: its own line, exit 1, no connect advice -------------------------


def test_delivery_unknown_is_not_a_connect_failure(cli: Cli, tmp_path) -> None:
    def on_data(conn: RawConn, data: bytes) -> bool:
        if b"Subject: lost" in data:
            conn.reset()  # no reply to the end of data
            return False
        conn.send(b"250 queued\r\n")
        return True

    subjects = ("one", "lost", "three")
    batch = jsonl(
        tmp_path,
        *({"to": ["b@example.com"], "subject": s, "text": "x"} for s in subjects),
    )
    with RawServer(mail_server(on_data)) as server:
        run = cli(["send", url(server), "--jsonl", batch, *FROM])
    assert run.code == 1, run.both
    assert (
        "delivery unknown: the server may have accepted it; check before resending"
        in run.out
    )
    assert "failed" not in run.out
    assert "check the host and port" not in run.err
    assert run.out.count(": sent: 250 queued") == 2


# -- 4. --jsonl renders every line before the first send -------------------------------


def test_an_unrenderable_line_stops_the_run_before_any_send(cli: Cli, tmp_path) -> None:
    datas: list[bytes] = []
    batch = jsonl(
        tmp_path,
        {"to": ["b@example.com"], "subject": "fine", "text": "x"},
        {
            "to": ["c@example.com"],
            "subject": "bad",
            "text": "x",
            "list_unsubscribe": ["https://example.com/u?" + "a" * 1100],
        },
    )
    with RawServer(
        mail_server(lambda c, d: c.send(b"250 ok\r\n") or True, datas)
    ) as server:
        run = cli(["send", url(server), "--jsonl", batch, *FROM])
        assert server.connections == []
    assert run.code == 2, run.both
    assert f"{batch}, line 2: header List-Unsubscribe" in run.err
    assert "nothing was sent" in run.err
    assert datas == []


# -- 5. argparse errors hide URLs and the password --------------------------------------


def test_usage_errors_hide_the_url_and_password(cli: Cli) -> None:
    run = cli(
        ["check", "smtp://alice:pa ss-w0rd@mail.example.com", "extra", "smtps://x:y@z"]
    )
    assert run.code == 2
    assert "unrecognized arguments" in run.err
    for shown in ("pa ss", "ss-w0rd", "alice", "x:y", "mail.example.com"):
        assert shown not in run.both, shown
    run = cli(["check", "--bogus=env-secret-1"], env={"SMTP_PASSWORD": "env-secret-1"})
    assert run.code == 2
    assert "env-secret-1" not in run.both
    assert "--bogus=***" in run.err


# -- 7. STARTTLS refused or broken: exit 3, the server named, advice ---------------------


@pytest.mark.parametrize(
    ("reply", "sentence"),
    [
        (
            b"454 4.7.0 TLS not available due to temporary reason\r\n",
            "STARTTLS refused: 454",
        ),
        (b"220 go\r\n250 injected\r\n", "server sent data after its STARTTLS reply"),
    ],
)
def test_starttls_refused_or_broken_exits_3(cli: Cli, reply, sentence) -> None:
    def script(conn: RawConn) -> None:
        conn.send(b"220 hi\r\n")
        conn.readline()
        conn.send(b"250-a\r\n250 STARTTLS\r\n")
        conn.readline()
        conn.send(reply)
        while line := conn.readline():
            if line.startswith(b"QUIT"):
                conn.send(b"221 bye\r\n")
                return

    with RawServer(script) as server:
        run = cli(["check", f"smtp://{server.host}:{server.port}?timeout=5"])
    assert run.code == 3, run.both
    assert f"{server.host}:{server.port}" in run.err
    assert sentence in run.err
    assert "would not start TLS" in run.err


# -- 9. odd input: usage errors, exit 2, no traceback ------------------------------------


def test_password_prompt_at_end_of_stdin_exits_2() -> None:
    run = run_subprocess(
        ["check", "smtp://alice@127.0.0.1:9?timeout=1", "--prompt-password"], stdin=b""
    )
    assert run.code == 2, run.both
    assert "--prompt-password got no password" in run.err
    assert "Traceback" not in run.err


def test_deeply_nested_jsonl_exits_2(cli: Cli, tmp_path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n", "utf-8")
    run = cli(["send", "smtp://127.0.0.1:9?tls=none", "--jsonl", str(path), *FROM])
    assert run.code == 2, run.both
    assert "line 1: nested too deeply" in run.err
    assert "Traceback" not in run.err


def test_unforeseen_input_errors_are_usage_errors(monkeypatch) -> None:
    def broken(path, stdin=None):
        raise RuntimeError("device went away")

    monkeypatch.setattr(_compose, "_read_bytes", broken)
    run = run_inline(
        ["render", *FROM, "--to", "b@example.com", "--text", "x", "-o", "-"]
    )
    assert run.code == 2, run.both
    assert "cannot read the message files: RuntimeError: device went away" in run.err
    monkeypatch.setattr(
        _compose, "_read_bytes", lambda *a: (_ for _ in ()).throw(RecursionError())
    )
    run = run_inline(
        ["render", *FROM, "--to", "b@example.com", "--text", "x", "-o", "-"]
    )
    assert (run.code, "nested too deeply" in run.err) == (2, True), run.both


# -- 10. --inline with any file name ----------------------------------------------------


def test_inline_file_names_with_spaces_and_non_ascii(tmp_path) -> None:
    html = tmp_path / "body.html"
    html.write_text('<img src="cid:my_logo.png"><img src="cid:caf_.png">', "utf-8")
    images = [tmp_path / "my logo.png", tmp_path / "café.png"]
    for image in images:
        image.write_bytes(b"\x89PNG")
    preview = tmp_path / "preview.html"
    run = run_subprocess(
        [
            "render",
            *FROM,
            "--to",
            "b@example.com",
            "--html",
            str(html),
            "--inline",
            str(images[0]),
            "--inline",
            str(images[1]),
            "-o",
            "-",
            "--preview",
            str(preview),
        ]
    )
    assert run.code == 0, run.both
    assert "Content-ID: <my_logo.png>" in run.out
    assert "Content-ID: <caf_.png>" in run.out
    shown = preview.read_text("utf-8")
    assert shown.count("data:image/png;base64,") == 2
    assert "cid:" not in shown


def test_inline_names_that_clash_are_a_usage_error(tmp_path) -> None:
    for name in ("a b.png", "a_b.png"):
        (tmp_path / name).write_bytes(b"\x89PNG")
    run = run_inline(
        [
            "render",
            *FROM,
            "--to",
            "b@example.com",
            "-o",
            "-",
            "--inline",
            str(tmp_path / "a b.png"),
            "--inline",
            str(tmp_path / "a_b.png"),
        ]
    )
    assert run.code == 2, run.both
    assert "would both be cid:a_b.png; rename one" in run.err


def test_password_prompt_that_ends_exits_2_in_process() -> None:
    def no_input(prompt: str) -> str:
        raise EOFError

    run = run_inline(
        ["check", "smtp://alice@127.0.0.1:9?timeout=1", "--prompt-password"],
        prompt=no_input,
    )
    assert run.code == 2, run.both
    assert "--prompt-password got no password" in run.err


def test_a_message_never_sent_reads_not_sent() -> None:
    out = io.StringIO()
    report = send._Report(Output(out, io.StringIO()), 2)
    report.add(SendResult(envelope=None, error=NotSentError("not sent"), attempts=0))
    assert out.getvalue() == "message 1/2: not sent (interrupted before its turn)\n"
    assert report.failures == [send.ExitCode.FAILED]
    assert not report.reached_server
