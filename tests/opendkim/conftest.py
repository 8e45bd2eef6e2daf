"""Session fixtures: dnsmasq, OpenDKIM (verify mode) and a Postfix using it as milter.

Skipped with the reason when a program is missing, but failing under CI (the
``CI`` environment variable is set), like tests/postfix/conftest.py.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..dkimkeys import TestKey, ed25519_key, rsa_key
from ..mailers import mailer_kind, make_mailer
from ..postfix.mta import MTAUnavailableError, PostfixInstance, mta_unavailable_reason
from ..services import service_unavailable
from .verifier import DNS, OpenDKIM, new_directory, verifier_unavailable_reason

__all__ = ["mailer_kind", "make_mailer"]

DOMAIN = "dkim.smtpkit.test"
KEYS = {"rsa": rsa_key, "ed25519": ed25519_key}


@pytest.fixture(scope="session")
def verifier_dir() -> Iterator[Path]:
    path = new_directory()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def opendkim(verifier_dir: Path) -> Iterator[OpenDKIM]:
    """OpenDKIM verifying with the TXT records of both test keys (selectors
    ``rsa`` and ``ed25519``), checked with opendkim-testkey first."""
    reason = verifier_unavailable_reason() or mta_unavailable_reason()
    if reason is not None:
        service_unavailable("OpenDKIM verifier", reason)
    dns = DNS(
        verifier_dir,
        {f"{sel}._domainkey.{DOMAIN}": key().txt for sel, key in KEYS.items()},
    )
    verifier = OpenDKIM(verifier_dir, dns)
    try:
        dns.start()
        verifier.start()
        for selector, key in KEYS.items():
            key_file = verifier_dir / f"{selector}.key"
            key_file.write_bytes(key().pem)
            key_file.chmod(0o600)
            rsa = key().algorithm == "rsa-sha256"
            verifier.check_key(DOMAIN, selector, key_file if rsa else None)
    except MTAUnavailableError as exc:
        verifier.stop()
        dns.stop()
        service_unavailable("OpenDKIM verifier", exc)
    try:
        yield verifier
    finally:
        verifier.stop()
        dns.stop()
    pgrep = subprocess.run(
        ["pgrep", "-f", str(verifier_dir)], capture_output=True, text=True, check=False
    )
    assert pgrep.returncode == 1, f"processes left behind: {pgrep.stdout}"


@pytest.fixture(scope="session")
def postfix(opendkim: OpenDKIM) -> Iterator[PostfixInstance]:
    """A private Postfix whose smtpd hands every message to OpenDKIM."""
    mta = PostfixInstance(
        main_cf={
            "smtpd_milters": opendkim.milter,
            "milter_default_action": "tempfail",  # never pass a message unchecked
        }
    )
    try:
        mta.start()
    except MTAUnavailableError as exc:
        service_unavailable("OpenDKIM verifier", exc)
    try:
        yield mta
    finally:
        mta.stop()


@pytest.fixture(params=sorted(KEYS))
def key(request: pytest.FixtureRequest) -> tuple[str, TestKey]:
    """A selector and its test key: each test runs for RSA and Ed25519."""
    return request.param, KEYS[request.param]()


@pytest.fixture
def address() -> Callable[[], str]:
    """Make a unique recipient address (tests share the one Postfix)."""
    return lambda: f"rcpt-{uuid.uuid4().hex[:8]}@example.net"
