"""``smtpkit check`` and ``send`` as processes against the private Postfix.

Postfix's own SASL (Dovecot) refuses the wrong password; the command must exit
4 with the library's sentence, and report the real TLS session when it works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import quote

import pytest

from .mta import CLIENT_HOSTNAME, TEST_USERS

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

ALICE = "alice@example.com"


def smtpkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def url(postfix, endpoint: str, password: str) -> str:
    scheme = "smtps" if endpoint == "smtps" else "smtp"
    return (
        f"{scheme}://{quote(ALICE, safe='')}:{quote(password, safe='')}@{postfix.host}:"
        f"{postfix.ports[endpoint]}?ca_file={postfix.ca_file}&timeout=10"
        f"&local_hostname={CLIENT_HOSTNAME}"
    )


@pytest.mark.parametrize("endpoint", ["submission", "smtps"])
def test_check_reports_the_postfix_session(postfix, endpoint):
    proc = smtpkit("check", url(postfix, endpoint, TEST_USERS[ALICE]), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["port"] == postfix.ports[endpoint]
    assert report["starttls_used"] is (endpoint == "submission")
    assert report["tls_version"] in {"TLSv1.2", "TLSv1.3"}
    assert report["auth_mechanism"] is not None
    assert report["pipelining"] is True
    assert TEST_USERS[ALICE] not in proc.stdout + proc.stderr
    assert quote(TEST_USERS[ALICE], safe="") not in proc.stdout + proc.stderr


def test_check_wrong_password_exits_4(postfix):
    proc = smtpkit("check", url(postfix, "submission", "not-the-password"))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "refused the login" in proc.stderr
    assert "535" in proc.stderr
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_send_through_postfix(postfix, address, tmp_path):
    rcpt = address()
    body = tmp_path / "body.txt"
    body.write_text("sent by the smtpkit command\n", encoding="utf-8")
    proc = smtpkit(
        "send", url(postfix, "submission", TEST_USERS[ALICE]), "--from", ALICE,
        "--to", rcpt, "--subject", "CLI via Postfix", "--text", str(body),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"accepted {rcpt}: 250" in proc.stdout
    [delivery] = postfix.wait_for_deliveries(1, recipients=[rcpt])
    assert delivery.message()["Subject"] == "CLI via Postfix"
    assert b"sent by the smtpkit command" in delivery.original
