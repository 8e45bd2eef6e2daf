"""``smtpkit check`` end to end against aiosmtpd: the report, and each exit code."""

from __future__ import annotations

import json
import os
import pty
import sys
import time

import pytest

import smtpkit

from .clirunner import _CLEAN_ENV, Cli, cli_fixture, run_inline  # noqa: F401 - the fixture
from .smtpd import USERS, check_password, free_port

pytestmark = pytest.mark.integration

ALICE_PASSWORD = USERS["alice"]


@pytest.fixture
def submission(start_server, server_tls_context):
    """STARTTLS required, then AUTH (PLAIN, LOGIN...) against ``USERS``."""
    return start_server(
        tls_context=server_tls_context,
        require_starttls=True,
        authenticator=check_password,
        auth_required=True,
    )


def url_for(server, ca_file: str, userinfo: str = "") -> str:
    return f"smtp://{userinfo}{server.host}:{server.port}?ca_file={ca_file}&timeout=5"


def test_check_prints_the_report(cli: Cli, submission, ca_file):
    run = cli(["check", url_for(submission, ca_file, f"alice:{ALICE_PASSWORD}@")])
    assert run.code == 0, run.both
    assert f"url: smtp://alice:***@127.0.0.1:{submission.port}" in run.out
    assert "banner: " in run.out
    assert "TLS: TLSv1." in run.out
    assert "login: " in run.out
    assert "ok: the server accepted the connection and the login" in run.out
    assert ALICE_PASSWORD not in run.both
    assert submission.messages == []  # a check sends no mail


def test_check_json(cli: Cli, submission, ca_file):
    run = cli(
        ["check", url_for(submission, ca_file, f"alice:{ALICE_PASSWORD}@"), "--json"]
    )
    assert run.code == 0, run.both
    report = json.loads(run.out)
    assert report["ok"] is True
    assert report["url"].startswith("smtp://alice:***@127.0.0.1:")
    assert report["port"] == submission.port
    assert report["starttls_used"] is True
    assert report["tls_version"].startswith("TLSv1.")
    assert report["auth_mechanism"] in {"PLAIN", "CRAM-MD5", "LOGIN"}
    assert "auth" in report["timings"]
    assert ALICE_PASSWORD not in run.both


def test_wrong_password_exits_4_with_a_sentence_to_act_on(
    cli: Cli, submission, ca_file
):
    run = cli(["check", url_for(submission, ca_file, "alice:not-the-password@")])
    assert run.code == 4, run.both
    assert run.out == ""
    assert "smtpkit check: error:" in run.err
    assert "refused the login" in run.err
    assert "535" in run.err
    assert "check the username and password" in run.err
    assert "not-the-password" not in run.both


def test_wrong_password_json_exits_4(cli: Cli, submission, ca_file):
    run = cli(
        ["check", url_for(submission, ca_file, "alice:not-the-password@"), "--json"]
    )
    assert run.code == 4, run.both
    document = json.loads(run.out)
    assert document["ok"] is False
    assert document["exit_code"] == 4
    assert document["error"]["type"] == "AuthenticationError"
    assert "refused the login" in document["error"]["message"]
    assert "not-the-password" not in run.both


def test_refused_port_exits_3(cli: Cli):
    run = cli(["check", f"smtp://127.0.0.1:{free_port()}?tls=none&timeout=5"])
    assert run.code == 3, run.both
    assert "connection refused" in run.err
    assert "what to do: check the host and port" in run.err


def test_untrusted_certificate_exits_3(
    cli: Cli, start_server, untrusted_tls_context, ca_file
):
    server = start_server(tls_context=untrusted_tls_context, require_starttls=True)
    run = cli(["check", url_for(server, ca_file)])
    assert run.code == 3, run.both
    assert "certificate" in run.err


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("ftp://mail.example.com", "smtp:// or smtps://"),
        ("smtp://al@ice:pw@mail.example.com", "percent-encode"),
        ("smtp://mail.example.com:99999", "invalid SMTP URL"),
        ("smtp://mail.example.com?timeout=soon", "timeout"),
        ("smtp://alice@mail.example.com", "a user name is set but no password"),
        ("smtp://alice:pw@mail.example.com?tls=none", "cleartext"),
    ],
)
def test_bad_url_exits_2(cli: Cli, url, sentence):
    run = cli(["check", url])
    assert run.code == 2, run.both
    assert sentence in run.err
    assert "what to do: fix the URL" in run.err


def test_no_url_exits_2(cli: Cli):
    run = cli(["check"])
    assert run.code == 2
    assert "set $SMTP_URL" in run.err


def test_credentials_from_the_environment(cli: Cli, submission, ca_file):
    env = {
        "SMTP_URL": url_for(submission, ca_file),
        "SMTP_USERNAME": "alice",
        "SMTP_PASSWORD": ALICE_PASSWORD,
    }
    run = cli(["check", "--json"], env=env)
    assert run.code == 0, run.both
    assert json.loads(run.out)["url"] == env["SMTP_URL"]  # no user: none shown
    assert ALICE_PASSWORD not in run.both


def test_url_credentials_win_over_the_environment(cli: Cli, submission, ca_file):
    env = {"SMTP_USERNAME": "mallory", "SMTP_PASSWORD": "from-the-environment"}
    url = url_for(submission, ca_file, f"alice:{ALICE_PASSWORD}@")
    assert cli(["check", url], env=env).code == 0
    # The URL's user without a password takes the environment's password.
    env = {"SMTP_PASSWORD": "wrong-from-environment"}
    run = cli(["check", url_for(submission, ca_file, "alice@")], env=env)
    assert run.code == 4
    assert "wrong-from-environment" not in run.both


def test_prompted_password_inline(submission, ca_file):
    asked = []

    def prompt(text: str) -> str:
        asked.append(text)
        return ALICE_PASSWORD

    url = url_for(submission, ca_file, "alice:ignored-url-password@")
    run = run_inline(["check", url, "--prompt-password"], prompt=prompt)
    assert run.code == 0, run.both
    assert asked == ["Password for alice: "]


def test_prompt_needs_a_user_name(cli: Cli, submission, ca_file):
    run = cli(["check", url_for(submission, ca_file), "--prompt-password"])
    assert run.code == 2
    assert "--prompt-password needs a user name" in run.err


def test_prompted_password_is_not_echoed_on_a_terminal(submission, ca_file):
    """The real getpass on a pseudo-terminal: the typed password never shows."""
    url = url_for(submission, ca_file, "alice@")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes the command
        os.execve(  # noqa: S606 - the test's own interpreter
            sys.executable,
            [sys.executable, "-m", "smtpkit", "check", url, "--prompt-password"],
            _CLEAN_ENV,
        )
    seen = _read_until(fd, b"Password for alice: ")
    os.write(fd, ALICE_PASSWORD.encode() + b"\n")
    seen += _read_until(fd, None)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"ok: the server accepted" in seen
    assert ALICE_PASSWORD.encode() not in seen


def _read_until(fd: int, marker: bytes | None, timeout: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if marker is not None and marker in seen:
            break
    return seen


def test_help_and_version(cli: Cli):
    run = cli(["--version"])
    assert run.code == 0
    assert f"smtpkit {smtpkit.__version__}" in run.out
    for command in ("check", "send", "render"):
        run = cli([command, "--help"])
        assert run.code == 0
        assert "examples:" in run.out
    assert "SMTP_PASSWORD" in cli(["--help"]).out
