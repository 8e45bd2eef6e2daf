"""The password never reaches stdout or stderr: not in errors, --json, or the URL shown."""

from __future__ import annotations

import json
import ssl
from urllib.parse import quote

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .clirunner import Run, run_inline, run_subprocess
from .smtpd import RecordingHandler, Server

pytestmark = pytest.mark.integration

# Any Unicode but lone surrogates (not text) and NUL (PLAIN's separator).
# At most 60 characters (240 UTF-8 bytes): AUTH PLAIN's base64 of a longer password
# can pass aiosmtpd's 512-octet command line limit, which answers 500, not 535.
ODD_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=3,
    max_size=60,
)


def accept_good(server, session, envelope, mechanism, auth_data):
    """Accept the user "good" with any password; refuse everyone else."""
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"good"
    return AuthResult(success=ok, handled=False, auth_data="good" if ok else None)


@pytest.fixture(scope="module")
def server(ca, tmp_path_factory):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    running = Server(
        RecordingHandler(),
        tls_context=context,
        require_starttls=True,
        authenticator=accept_good,
        auth_required=True,
    )
    yield running
    running.stop()


def url(server, ca_file: str, user: str, password: str) -> str:
    return (
        f"smtp://{user}:{quote(password, safe='')}@{server.host}:{server.port}"
        f"?ca_file={ca_file}&timeout=5"
    )


def assert_hidden(run: Run, password: str) -> None:
    for form in {password, quote(password, safe=""), json.dumps(password)[1:-1]}:
        assert form not in run.both, (form, run.both)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(core=ODD_TEXT)
def test_password_never_printed(server, ca_file, core):
    password = f"Sx~{core}"
    for user, expected in (("good", 0), ("alice", 4)):
        run = run_inline(["check", url(server, ca_file, user, password), "--json"])
        assert run.code == expected, run.both
        assert json.loads(run.out)["url"].startswith(f"smtp://{user}:***@")
        assert_hidden(run, password)
    env = {"SMTP_USERNAME": "alice", "SMTP_PASSWORD": password}
    base = f"smtp://{server.host}:{server.port}?ca_file={ca_file}&timeout=5"
    run = run_inline(
        ["send", base, "--from", "a@example.com", "--to", "b@example.com"], env=env
    )
    assert run.code == 4, run.both
    assert_hidden(run, password)


@pytest.mark.parametrize(
    "password", ['p@ss:w/rd?#[]% "quoted" \\ 😀 密码', "hunter2-long"]
)
def test_password_never_printed_by_the_process(server, ca_file, password):
    for user, expected in (("good", 0), ("alice", 4)):
        for extra in ([], ["--json"]):
            run = run_subprocess(
                ["check", url(server, ca_file, user, password), *extra]
            )
            assert run.code == expected, run.both
            assert_hidden(run, password)


def test_a_server_quoting_the_password_is_redacted(server, ca_file):
    """Even a reply that echoes the password shows *** instead."""
    password = "very-secret-password"
    server.handler.rcpt_replies["echo@example.com"] = f"550 5.7.1 not with {password}"
    run = run_inline(
        [
            "send",
            url(server, ca_file, "good", password),
            "--from",
            "a@example.com",
            "--to",
            "echo@example.com",
            "--to",
            "b@example.com",
        ]
    )
    assert run.code == 1, run.both
    assert password not in run.both
    assert "refused  echo@example.com: 550 5.7.1 not with ***" in run.out
