"""A real DKIM verifier on loopback: dnsmasq serves the selectors' TXT records,
OpenDKIM (verify mode) resolves them through libunbound and checks every message
a private Postfix receives, as its milter.

OpenDKIM resolves with libunbound, which needs two things to reach dnsmasq:
``forward-zone`` to dnsmasq's address and port, and ``local-zone: "test."
nodefault``, because unbound answers the RFC 6761 names (``test.`` among them)
itself with NXDOMAIN.  ``domain-insecure`` and the iterator-only module list keep
DNSSEC validation out of the way (the test zone is unsigned).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ..postfix.mta import MTAUnavailableError, free_port
from ..postfix.mta_config import HOST

__all__ = ["DNS", "OpenDKIM", "verifier_unavailable_reason"]

PROGRAMS = ("dnsmasq", "opendkim", "opendkim-testkey")
_SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def verifier_unavailable_reason() -> str | None:
    """Why the verifier cannot run here, or None."""
    missing = [p for p in PROGRAMS if shutil.which(p, path=_SBIN) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (run tests/mta/install.sh as root)"
    return None


def _popen(argv: list[str], errors: Path) -> subprocess.Popen[bytes]:
    """Start *argv* with its stderr in the file *errors*."""
    with errors.open("wb") as stream:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stream)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class DNS:
    """dnsmasq on 127.0.0.1 (a free port) answering TXT records, nothing else."""

    def __init__(self, directory: Path, records: Mapping[str, str]) -> None:
        self.directory = directory
        self.records = dict(records)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _ in range(3):
            self.port = free_port()
            argv = [
                shutil.which("dnsmasq", path=_SBIN) or "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                f"--port={self.port}",
                f"--listen-address={HOST}",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                f"--pid-file={self.directory / 'dnsmasq.pid'}",
                f"--log-facility={self.directory / 'dnsmasq.log'}",
                "--log-queries",
                *(
                    f"--txt-record={name},{value}"
                    for name, value in self.records.items()
                ),
            ]
            process = _popen(argv, self.directory / "dnsmasq.err")
            time.sleep(0.3)
            if process.poll() is None:
                self._process = process
                return
            error = (self.directory / "dnsmasq.err").read_text(errors="replace")
            if "in use" not in error:
                break
        msg = f"dnsmasq did not start: {error}"
        raise MTAUnavailableError(msg)

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None


class OpenDKIM:
    """``opendkim -f -x CONF`` in verify mode, listening as a milter on 127.0.0.1."""

    AUTHSERV_ID = "verifier.smtpkit.test"

    def __init__(self, directory: Path, dns: DNS) -> None:
        self.directory = directory
        self.dns = dns
        self.port = 0
        self.conf = directory / "opendkim.conf"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def milter(self) -> str:
        """The address for Postfix's ``smtpd_milters``."""
        return f"inet:{HOST}:{self.port}"

    def _write(self) -> None:
        unbound = self.directory / "unbound.conf"
        unbound.write_text(
            "server:\n"
            "    do-not-query-localhost: no\n"
            '    domain-insecure: "test."\n'
            '    local-zone: "test." nodefault\n'
            '    module-config: "iterator"\n'
            "forward-zone:\n"
            '    name: "."\n'
            f"    forward-addr: {HOST}@{self.dns.port}\n",
            encoding="utf-8",
        )
        self.conf.write_text(
            "Mode v\n"
            "Syslog no\n"
            f"Socket inet:{self.port}@{HOST}\n"
            f"AuthservID {self.AUTHSERV_ID}\n"
            f"PidFile {self.directory / 'opendkim.pid'}\n"
            f"ResolverConfiguration {unbound}\n"
            "AlwaysAddARHeader yes\n",
            encoding="utf-8",
        )

    def check_key(self, domain: str, selector: str, key_file: Path | None) -> None:
        """Run ``opendkim-testkey``: the record resolves (and matches *key_file*:
        the tool compares RSA keys only)."""
        match = [] if key_file is None else ["-k", str(key_file)]
        argv = ["opendkim-testkey", "-d", domain, "-s", selector, *match]
        proc = subprocess.run(
            [*argv, "-x", str(self.conf), "-vvv"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0 or "key OK" not in output:
            msg = (
                f"opendkim-testkey failed for {selector}._domainkey.{domain}: {output}"
            )
            raise MTAUnavailableError(msg)

    def start(self) -> None:
        self.port = free_port()
        self._write()
        errors = self.directory / "opendkim.err"
        process = _popen(["opendkim", "-f", "-x", str(self.conf)], errors)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                msg = f"opendkim exited: {errors.read_text(errors='replace')}"
                raise MTAUnavailableError(msg)
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    self._process = process
                    return
            except OSError:
                time.sleep(0.1)
        _stop(process)
        msg = "opendkim did not listen within 10 s"
        raise MTAUnavailableError(msg)

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None


def new_directory() -> Path:
    """A directory Postfix's and OpenDKIM's helpers can read (not pytest's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="smtpkit-opendkim-"))
    path.chmod(0o755)
    return path
