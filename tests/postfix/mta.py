"""A private Postfix instance, with Dovecot as its SASL backend, on 127.0.0.1.

``PostfixInstance`` writes ``main.cf``, ``master.cf`` and ``dovecot.conf`` (rendered
by ``mta_config``) into a directory of its own, starts ``postfix -c DIR/etc start``
and ``dovecot -c DIR/dovecot.conf``, and stops both again, leaving no process
behind.  Every message is stored, one file per recipient, under ``DIR/mail/new``;
nothing can leave the machine.  Reusable outside tests/postfix::

    from tests.postfix.mta import PostfixInstance

    with PostfixInstance() as mta:
        config = mta.config("submission", username=..., password=...)
        ...
        [delivery] = mta.wait_for_deliveries(1, recipients=["to@example.com"])
        assert delivery.original == sent_bytes.replace(b"\\r\\n", b"\\n")

Needs root (Postfix and Dovecot drop privileges themselves) and the Debian packages
``postfix`` and ``dovecot-core`` (tests/mta/install.sh installs them).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import pty
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from typing_extensions import Self

from smtpkit import SendResult, SMTPConfig

from .mta_config import (
    BUSY_PREFIX,
    CLIENT_HOSTNAME,
    DEFAULT_ENDPOINTS,
    HOST,
    MTA_HOSTNAME,
    TEST_TOKENS,
    TEST_USERS,
    UNKNOWN_PREFIX,
    Endpoint,
    Layout,
    deliver_sh,
    dovecot_conf,
    master_cf,
    passwd_file,
    recipient_access,
)
from .mta_config import main_cf as main_cf_defaults

__all__ = [
    "BUSY_PREFIX",
    "DEFAULT_ENDPOINTS",
    "TEST_TOKENS",
    "TEST_USERS",
    "UNKNOWN_PREFIX",
    "Delivery",
    "Endpoint",
    "MTAUnavailableError",
    "PostfixInstance",
    "free_port",
    "mta_unavailable_reason",
    "queue_id",
]

_QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold")
_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class MTAUnavailableError(RuntimeError):
    """Postfix or Dovecot is missing or could not be started."""


@dataclass(frozen=True)
class Delivery:
    """One message as the pipe(8) transport stored it for one recipient.

    Attributes:
        sender: The envelope sender (MAIL FROM), ``""`` for the null sender.
        recipient: The envelope recipient (RCPT TO).
        data: The stored bytes: Postfix's ``Received:`` header, then the message
            exactly as the client sent it, except that pipe(8) writes LF, not CRLF.
        path: Where it was stored.
    """

    sender: str
    recipient: str
    data: bytes
    path: Path

    @property
    def received(self) -> str:
        """The ``Received:`` header Postfix prepended, unfolded."""
        return " ".join(_split_received(self.data)[0].decode("utf-8").split())

    @property
    def original(self) -> bytes:
        """The message as sent (with LF line ends), without Postfix's ``Received:``."""
        return _split_received(self.data)[1]

    def message(self) -> EmailMessage:
        """Parse the stored message with the modern email policy.

        ``message_from_bytes`` keeps raw UTF-8 headers (RFC 6532, sent with
        SMTPUTF8) as surrogate escapes, so such messages are parsed as text.
        """
        head = self.data.split(b"\n\n", 1)[0]
        parsed = (
            email.message_from_bytes(self.data, policy=email.policy.default)
            if head.isascii()
            else email.message_from_string(
                self.data.decode("utf-8"), policy=email.policy.default
            )
        )
        assert isinstance(parsed, EmailMessage)  # policy.default builds one
        return parsed


def _split_received(data: bytes) -> tuple[bytes, bytes]:
    lines = data.split(b"\n")
    if not lines[0].startswith(b"Received:"):
        return b"", data
    end = 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return b"\n".join(lines[:end]), b"\n".join(lines[end:])


def queue_id(result: SendResult) -> str:
    """The queue id in a result's final reply ("250 2.0.0 Ok: queued as ID")."""
    assert result.reply is not None, "the message was not accepted"
    return result.reply.text.rsplit(" ", 1)[-1]


def mta_unavailable_reason() -> str | None:
    """Why a private Postfix cannot run here, or None when it should."""
    path = os.environ.get("PATH", "") + ":" + _SYSTEM_PATH
    missing = [c for c in ("postfix", "dovecot") if shutil.which(c, path=path) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (run tests/mta/install.sh as root)"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    for user in ("postfix", "nobody", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"system user {user!r} is missing"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PostfixInstance:
    """Start, inspect and stop one private Postfix (+ Dovecot) instance.

    Args:
        directory: Where configuration, queue, logs and delivered mail live; a new
            ``/tmp/smtpkit-postfix-*`` (removed by ``stop``) when None.  Postfix's
            unprivileged daemons must be able to reach it, so not under pytest's
            mode-0700 ``tmp_path``.
        endpoints: The smtpd listeners, each on its own free port.
        ca: Signs the server certificate (``127.0.0.1``, ``localhost``); a new
            throw-away CA when None.  Clients trust ``ca_file``.
        users: SASL user names and passwords.
        tokens: SASL user names and OAuth2 bearer tokens.
        main_cf: Extra or overriding main.cf settings.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        endpoints: Iterable[Endpoint] = DEFAULT_ENDPOINTS,
        ca: trustme.CA | None = None,
        users: Mapping[str, str] = TEST_USERS,
        tokens: Mapping[str, str] = TEST_TOKENS,
        main_cf: Mapping[str, str] | None = None,
    ) -> None:
        self._own_directory = directory is None
        root = directory or tempfile.mkdtemp(prefix="smtpkit-postfix-")
        self.directory = Path(root).resolve()
        if any(ch.isspace() for ch in str(self.directory)):
            msg = f"Postfix cannot use a directory with spaces: {self.directory}"
            raise ValueError(msg)
        self.layout = Layout(self.directory)
        self.endpoints = {e.name: e for e in endpoints}
        self.ca = ca or trustme.CA()
        self.users = {**users, **tokens}
        self.main_cf = {**main_cf_defaults(self.layout), **(main_cf or {})}
        self.host = HOST
        self.ports: dict[str, int] = {}
        self.ca_file = str(self.directory / "ca.pem")
        self.log_path = self.layout.postfix_log
        self._started = False

    def __repr__(self) -> str:
        return f"<PostfixInstance {self.directory} ports={self.ports}>"

    # -- lifecycle --------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, *, timeout: float = 30.0) -> None:
        """Write the configuration and start Dovecot, then Postfix.

        Raises:
            MTAUnavailableError: A program is missing or failed to start; the
                message includes the end of its log.
        """
        reason = mta_unavailable_reason()
        if reason is not None:
            raise MTAUnavailableError(reason)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # pipe(8) runs as nobody and writes under it
        self._started = True
        try:
            self._write_files()
            self._start_dovecot(timeout)
            for tries_left in reversed(range(3)):
                self.ports = {name: free_port() for name in self.endpoints}
                (self.layout.config_dir / "master.cf").write_text(
                    master_cf(self.layout, self.endpoints, self.ports), encoding="utf-8"
                )
                try:
                    self._postfix("start", timeout)
                    break
                except MTAUnavailableError as exc:
                    # Another process may have taken one of the ports meanwhile.
                    if "in use" not in str(exc) or not tries_left:
                        raise
        except BaseException:
            self.stop(remove=False)
            raise

    def stop(self, *, remove: bool | None = None, timeout: float = 15.0) -> None:
        """Stop Postfix and Dovecot and wait until none of their processes is left.

        Processes of this instance that outlive a graceful stop are killed by PID.

        Args:
            remove: Delete the directory; defaults to True when it was created
                by this instance.
            timeout: Seconds to wait for the processes to exit.
        """
        if self._started:
            self._started = False
            if (self.layout.config_dir / "master.cf").exists():
                with contextlib.suppress(MTAUnavailableError):
                    self._postfix("stop", timeout)
            with contextlib.suppress(OSError, ValueError):  # not running
                pid = (self.layout.dovecot_dir / "master.pid").read_text()
                os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.05)
            for leftover in self.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
        if remove if remove is not None else self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def processes(self) -> list[int]:
        """PIDs of this instance's processes, found by working directory or argv.

        Postfix daemons run in the queue directory, Dovecot's in its base_dir;
        Dovecot titles its processes ``dovecot-INSTANCE/auth``.
        """
        mine = str(self.directory)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
                argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue  # exited meanwhile, or a kernel thread
            if (
                cwd == mine
                or cwd.startswith(mine + "/")
                or mine in argv
                or f"dovecot-{self.directory.name}/" in argv
            ):
                found.append(int(entry.name))
        return found

    def _write_files(self) -> None:
        layout = self.layout
        etc = layout.config_dir
        etc.mkdir(mode=0o755, exist_ok=True)
        # postfix(1) chdirs here first; post-install creates what is inside.
        layout.queue_dir.mkdir(mode=0o755, exist_ok=True)
        self.ca.cert_pem.write_to_path(self.ca_file)
        chain = etc / "server.pem"
        chain.touch(mode=0o600)  # smtpd reads it as root, before dropping privileges
        self.ca.issue_cert(
            HOST, "localhost", MTA_HOSTNAME
        ).private_key_and_cert_chain_pem.write_to_path(str(chain))
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf.items())
        (etc / "main.cf").write_text(main, encoding="utf-8")
        (etc / "recipient_access").write_text(recipient_access(), encoding="utf-8")
        script = etc / "deliver.sh"
        script.write_text(deliver_sh(layout), encoding="utf-8")
        script.chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        for sub in ("tmp", "new"):
            path = layout.mail_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        passwd = self.directory / "passwd"
        passwd.write_text(passwd_file(self.users), encoding="utf-8")
        passwd.chmod(0o644)  # read by Dovecot's auth process (user dovecot)
        (self.directory / "dovecot.conf").write_text(
            dovecot_conf(layout), encoding="utf-8"
        )

    def _start_dovecot(self, timeout: float) -> None:
        self._run(["dovecot", "-c", str(self.directory / "dovecot.conf")], timeout)
        deadline = time.monotonic() + timeout
        while not self.layout.auth_socket.exists():
            if time.monotonic() > deadline:
                msg = f"Dovecot did not create its auth socket:\n{self.dovecot_log()}"
                raise MTAUnavailableError(msg)
            time.sleep(0.02)

    def _postfix(self, action: str, timeout: float) -> None:
        try:
            self._run(["postfix", "-c", str(self.layout.config_dir), action], timeout)
        except MTAUnavailableError as exc:
            if action != "start":
                raise
            msg = f"{exc}\n{self._postfix_check()}"
            raise MTAUnavailableError(msg) from exc

    def _postfix_check(self) -> str:
        """Run ``postfix check`` on a terminal, to say why ``start`` failed.

        postfix(1) reports its own errors only to a terminal or through
        postlogd(8), which is not running when the start failed.
        """
        primary, secondary = pty.openpty()
        try:
            with os.fdopen(secondary, "wb") as terminal:
                subprocess.run(
                    ["postfix", "-c", str(self.layout.config_dir), "check"],
                    stdin=subprocess.DEVNULL,
                    stdout=terminal,
                    stderr=terminal,
                    timeout=30,
                    check=False,
                    env={**os.environ, "PATH": _SYSTEM_PATH},
                )
            output = b""
            with contextlib.suppress(OSError):  # EIO once everything was read
                while chunk := os.read(primary, 4096):
                    output += chunk
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"postfix check failed: {exc}"
        finally:
            os.close(primary)
        return "postfix check: " + output.decode("utf-8", "replace")

    def _run(self, argv: list[str], timeout: float) -> None:
        # Output goes to a file, not a pipe: the daemons inherit the descriptors,
        # and subprocess would wait for a pipe's end for as long as they run.
        with (self.directory / "commands.out").open("a+b") as sink:
            start = sink.seek(0, os.SEEK_END)
            try:
                code = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                    env={**os.environ, "PATH": _SYSTEM_PATH},
                ).returncode
            except (OSError, subprocess.TimeoutExpired) as exc:
                msg = f"{' '.join(argv)} failed: {exc}"
                raise MTAUnavailableError(msg) from exc
            sink.seek(start)
            output = sink.read().decode("utf-8", "replace")
        if code != 0:
            msg = (
                f"{' '.join(argv)} exited with {code}: {output}\n"
                f"{self.log_tail()}\n{self.dovecot_log()}"
            )
            raise MTAUnavailableError(msg)

    # -- what the tests look at -------------------------------------------------

    def config(self, endpoint: str, **fields: Any) -> SMTPConfig:
        """An ``SMTPConfig`` for *endpoint* (fields override), trusting ``ca_file``."""
        fields.setdefault("tls", self.endpoints[endpoint].tls)
        fields.setdefault("timeout", 10.0)
        fields.setdefault("local_hostname", CLIENT_HOSTNAME)
        if fields["tls"] != "none" and "ssl_context" not in fields:
            fields.setdefault("ca_file", self.ca_file)
        return SMTPConfig(host=self.host, port=self.ports[endpoint], **fields)

    def deliveries(self, recipients: Iterable[str] | None = None) -> list[Delivery]:
        """Every stored message (optionally only for *recipients*), oldest first."""
        wanted = None if recipients is None else set(recipients)
        found = []
        for env in sorted((self.layout.mail_dir / "new").glob("*.env")):
            sender, recipient = env.read_text(encoding="utf-8").split("\n")[:2]
            if wanted is not None and recipient not in wanted:
                continue
            eml = env.with_suffix(".eml")
            with contextlib.suppress(FileNotFoundError):  # moved just after .env
                found.append(Delivery(sender, recipient, eml.read_bytes(), eml))
        return found

    def delivered_count(self) -> int:
        """How many messages are stored (cheap: counts files, parses nothing)."""
        return sum(1 for _ in (self.layout.mail_dir / "new").glob("*.eml"))

    def wait_for_deliveries(
        self,
        count: int,
        *,
        recipients: Iterable[str] | None = None,
        timeout: float = 10.0,
    ) -> list[Delivery]:
        """Wait until *count* messages (for *recipients*) are stored; return them.

        Delivery is asynchronous: the SMTP reply means "queued", and the queue
        manager hands the message to the pipe a moment later.  Returns as soon as
        there are at least *count*; ``wait_until_idle`` rules out more.

        Raises:
            AssertionError: Fewer arrived within *timeout* seconds.
        """
        wanted = None if recipients is None else list(recipients)
        deadline = time.monotonic() + timeout
        while len(found := self.deliveries(wanted)) < count:
            if time.monotonic() > deadline:
                msg = (
                    f"{len(found)} of {count} messages delivered within {timeout} s; "
                    f"{self.queued()} queued\n{self.log_tail()}"
                )
                raise AssertionError(msg)
            time.sleep(0.02)
        return found

    def queued(self) -> int:
        """Messages in the queue: not yet delivered, deferred or on hold."""
        queue = self.layout.queue_dir
        return sum(
            len(files) for sub in _QUEUE_SUBDIRS for _, _, files in os.walk(queue / sub)
        )

    def wait_until_idle(self, *, timeout: float = 10.0) -> None:
        """Wait until the queue is empty: every accepted message has been stored.

        Raises:
            AssertionError: Messages are still queued after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                msg = f"{self.queued()} messages still queued\n{self.log_tail()}"
                raise AssertionError(msg)
            time.sleep(0.02)

    def log(self, since: int = 0) -> str:
        """Postfix's log from byte offset *since* (see ``log_offset``)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_offset(self) -> int:
        """The log's current size, to read only what is logged after this point."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Postfix's log, for error messages."""
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(
        self, text: str, *, since: int = 0, count: int = 1, timeout: float = 10.0
    ) -> str:
        """Wait until *text* is logged *count* times after *since*; return that log.

        Postfix logs through postlogd(8), a moment after the event.

        Raises:
            AssertionError: It was not logged within *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while (log := self.log(since)).count(text) < count:
            if time.monotonic() > deadline:
                msg = f"{text!r} not logged {count} time(s) within {timeout} s:\n{log}"
                raise AssertionError(msg)
            time.sleep(0.02)
        return log

    def session_summary(self, queue_id: str, *, timeout: float = 10.0) -> str:
        """The smtpd ``disconnect`` line of the session that queued *queue_id*.

        It counts the session's commands, e.g. ``ehlo=2 starttls=1 auth=1 mail=3
        rcpt=3 bdat=3 quit=1 commands=14`` (``mail=1/2`` when one MAIL failed).
        """
        log = self.wait_for_log(f"{queue_id}: client=", timeout=timeout)
        found = re.search(rf"smtpd\[(\d+)\]: {queue_id}: client=", log)
        assert found is not None, log
        # One smtpd process serves one session at a time: its next "disconnect"
        # after the queue id ends this session.
        ending = f"smtpd[{found.group(1)}]: disconnect from "
        deadline = time.monotonic() + timeout
        while (start := log.find(ending, found.end())) < 0:
            if time.monotonic() > deadline:
                msg = f"the session that queued {queue_id} did not end:\n{log}"
                raise AssertionError(msg)
            time.sleep(0.02)
            log = self.log()
        return log[start : log.index("\n", start)]

    def dovecot_log(self) -> str:
        """Dovecot's log, for error messages."""
        try:
            return self.layout.dovecot_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
