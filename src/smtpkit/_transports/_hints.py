"""Error messages that name the server and say what to change.

A bare ``[Errno 111] Connection refused`` or ``[SSL: WRONG_VERSION_NUMBER]`` tells a
user neither which server was meant nor which setting is wrong.  The functions here
turn what went wrong, and where, into one sentence with the endpoint
(``host:port (tls=...)``) and, where the cause is clear, the fix.  They never see a
credential: an ``Endpoint`` holds the host, port, TLS mode and timeouts only.

The TLS mode / port mismatches diagnosed here cannot heal by retrying, so the
errors built for them are permanent (``is_transient`` is False):

* ``tls="implicit"`` against a plaintext server: the handshake reads the server's
  ``220`` greeting as a TLS record (OpenSSL: ``WRONG_VERSION_NUMBER``).
* STARTTLS or no TLS against an implicit-TLS port: such a server waits silently for
  the client's TLS handshake, so no greeting ever comes.  On port 465 the greeting
  wait is cut short (see ``IMPLICIT_PORT_GREETING_WAIT``).
* TLS bytes (a record starting ``0x16 0x03`` or an alert ``0x15 0x03``) where the
  plaintext greeting was expected.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from typing import Final

from .._config import TLSMode
from .._exceptions import (
    AuthenticationRequiredError,
    ConfigurationError,
    SMTPReplyError,
    TLSError,
)
from .._provider_replies import explain_reply
from .._reply import SMTPReply

__all__ = [
    "IMPLICIT_PORT_GREETING_WAIT",
    "IMPLICIT_TLS_PORTS",
    "Endpoint",
    "is_lost_session_alert",
    "is_tls_alert",
    "is_tls_refusal",
    "looks_like_tls",
    "lost_session_message",
    "mail_refusal",
    "no_starttls_message",
    "tls_failure",
    "tls_file_problem",
    "tls_files_error",
    "tls_step_text",
]

IMPLICIT_TLS_PORTS: Final = frozenset({465})  # RFC 8314 §7.3: submissions
# Seconds to wait for a greeting on an implicit-TLS port when the configuration
# does not use implicit TLS and sets no connect_timeout.  A plaintext SMTP server
# greets within milliseconds; an implicit-TLS server never does.
IMPLICIT_PORT_GREETING_WAIT: Final = 3.0
# The first bytes of a TLS handshake record and of an alert (RFC 8446 §5.1).
_TLS_RECORD_STARTS: Final = (b"\x16\x03", b"\x15\x03")
# OpenSSL's reasons for "the peer's bytes are not TLS records".
_NOT_TLS_REASONS: Final = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LAYER_FAILURE",
    }
)
_NO_COMMON_VERSION_REASONS: Final = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
    }
)
# Alerts a server sends about the client's certificate (RFC 8446 §6.2); under
# TLS 1.3 they arrive after the client's handshake is over, on its first read.
_CLIENT_CERT_ALERTS: Final = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)
_INSUFFICIENT_SECURITY: Final = "TLSV1_ALERT_INSUFFICIENT_SECURITY"
_UNRECOGNIZED_NAME: Final = "TLSV1_UNRECOGNIZED_NAME"
# The alerts by which a server refuses this client for good, during the handshake
# or just after the client's side of it is over: its certificate, the handshake
# itself (a TLS 1.2 server's answer to a missing client certificate, or no shared
# cipher suite), the TLS version, parameters too weak for the server
# (insufficient_security), or a host name (SNI) the server does not serve.  Any
# other alert (internal_error from a server under load or a proxy whose backend is
# down, bad_record_mac, decode_error...) says nothing about this client's
# settings: that session is lost (``ServerDisconnectedError``), and a retry may
# work, whether the alert came during the handshake or after it.
_REFUSAL_ALERTS: Final = _CLIENT_CERT_ALERTS | {
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    _INSUFFICIENT_SECURITY,
    _UNRECOGNIZED_NAME,
}
# OpenSSL names a received alert SSLV3_ALERT_*, TLSV1_ALERT_* or TLSV13_ALERT_*,
# except these RFC 6066 / RFC 8446 §6.2 alerts; their locally detected twins have
# other names (UNEXPECTED_MESSAGE, DECRYPTION_FAILED_OR_BAD_RECORD_MAC...).
_ALERT_PREFIXES: Final = ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")
_UNPREFIXED_ALERTS: Final = frozenset(
    {
        _UNRECOGNIZED_NAME,
        "TLSV1_UNSUPPORTED_EXTENSION",
        "TLSV1_CERTIFICATE_UNOBTAINABLE",
        "TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE",
        "TLSV1_BAD_CERTIFICATE_HASH_VALUE",
    }
)
_UNTRUSTED_CODES: Final = frozenset({2, 18, 19, 20, 21})  # X509_V_ERR_*: no trusted CA
_EXPIRED_CODES: Final = frozenset({9, 10})  # not yet valid, expired
_HOSTNAME_MISMATCH: Final = 62
_SET_IMPLICIT: Final = "set tls='implicit' (an smtps:// URL)"
_SET_STARTTLS: Final = (
    "use tls='starttls' (the default; an smtp:// URL) for ports 587 and 25; "
    "tls='implicit' is for port 465"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a connection goes, as error messages show it (no credentials)."""

    host: str
    port: int
    tls: TLSMode
    timeout: float
    connect_timeout: float | None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} (tls={self.tls.value})"

    @property
    def connect_wait(self) -> float:
        """Seconds allowed to connect and read the greeting."""
        return self.connect_timeout or self.timeout

    def timeout_setting(self) -> str:
        """Name the setting whose value ran out, for a connect-phase timeout."""
        if self.connect_timeout is not None:
            return f"connect_timeout={self.connect_timeout:g}"
        return f"timeout={self.timeout:g}; set connect_timeout to change it"

    @property
    def expects_implicit_tls(self) -> bool:
        """True for a port where the server starts TLS first, used without it."""
        return self.tls is not TLSMode.IMPLICIT and self.port in IMPLICIT_TLS_PORTS

    def greeting_wait(self) -> float:
        """Seconds to wait for the greeting after the TCP (and TLS) connect."""
        if self.expects_implicit_tls and self.connect_timeout is None:
            return min(self.connect_wait, IMPLICIT_PORT_GREETING_WAIT)
        return self.connect_wait

    # -- messages ------------------------------------------------------------------

    def resolve_failure(self, exc: socket.gaierror) -> tuple[str, bool]:
        """Describe a DNS failure; also say whether it may heal (EAI_AGAIN)."""
        reason = exc.strerror or str(exc)
        transient = exc.errno == socket.EAI_AGAIN
        advice = "" if transient else "; check the host name"
        where = f"port {self.port}, tls={self.tls.value}"
        return (
            f"cannot resolve {self.host} ({where}): {reason.lower()}{advice}",
            transient,
        )

    def connect_failure(self, exc: OSError) -> str:
        """Describe a refused or unreachable TCP connection."""
        reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
        return f"cannot connect to {self}: {reason}"

    def connect_timeout_message(self, stage: str) -> str:
        """Describe a timeout while connecting (``stage`` is ``tcp`` or ``tls``)."""
        what = (
            f"TLS handshake with {self}" if stage == "tls" else f"connecting to {self}"
        )
        return (
            f"timed out: {what} took longer than {self.connect_wait:g} s "
            f"({self.timeout_setting()})"
        )

    def greeting_timeout_message(
        self, waited: float, received: int = 0
    ) -> tuple[str, bool]:
        """Describe a missing greeting; True when it is a TLS mode mismatch.

        Args:
            waited: Seconds waited for the greeting.
            received: Bytes of the greeting that did arrive.  Any at all rule
                out an implicit-TLS server, which sends nothing until the
                client starts TLS: the greeting is then incomplete, not missing.
        """
        if received:
            setting = (
                self.timeout_setting()
                if waited >= self.connect_wait
                else f"smtpkit waits {waited:g} s on port {self.port} unless "
                "connect_timeout is set"
            )
            return (
                f"incomplete greeting from {self} within {waited:g} s: the server "
                f"sent {received} bytes of it, then nothing ({setting})",
                False,
            )
        head = f"no greeting from {self} within {waited:g} s"
        if self.expects_implicit_tls:
            # Likely, not certain: a plaintext server may just be slow to greet.
            slow = (
                "set connect_timeout"
                if self.connect_timeout is None
                else f"raise connect_timeout={self.connect_timeout:g}"
            )
            return (
                f"{head}: port {self.port} probably expects implicit TLS, where the "
                f"server waits silently for the client to start TLS; {_SET_IMPLICIT}; "
                f"if this server really is plaintext and slow to greet, {slow}",
                True,
            )
        if self.tls is TLSMode.IMPLICIT:
            return f"{head} ({self.timeout_setting()})", False
        return (
            f"{head} ({self.timeout_setting()}); a server that expects implicit "
            f"TLS is silent too: if this is an SMTPS port, {_SET_IMPLICIT}",
            False,
        )

    def tls_first_message(self) -> str:
        """Describe TLS bytes where a plaintext greeting was expected."""
        return (
            f"{self} answered with TLS where a plaintext SMTP greeting was "
            f"expected: the server spoke TLS first; {_SET_IMPLICIT}"
        )

    def in_context(self, message: str) -> str:
        """Add the endpoint to a connect-phase message that lacks it."""
        return f"{message} (connecting to {self})"


def looks_like_tls(data: bytes | bytearray) -> bool:
    """True when *data* starts like a TLS record: a handshake or an alert."""
    return bytes(data[:2]) in _TLS_RECORD_STARTS


def is_tls_refusal(exc: BaseException) -> bool:
    """True when *exc* is a TLS alert by which the server refuses this client.

    Only the alerts about the client's certificate, the handshake, the TLS
    version, parameters too weak for the server or a server name it does not
    serve count: retrying with the same settings fails the same way.  A
    close_notify (``SSLZeroReturnError``), an EOF (``SSLEOFError``), a reset and
    any other alert are not refusals: the session is lost, and may be retried.
    """
    reason = getattr(exc, "reason", None) or ""
    return isinstance(exc, ssl.SSLError) and reason in _REFUSAL_ALERTS


def is_tls_alert(exc: BaseException) -> bool:
    """True when *exc* is a TLS alert received from the server.

    Not a failure this client detected itself (a certificate it does not trust,
    bytes that are not TLS): only the server's own alert.  OpenSSL has no name
    for a few alerts (unknown_psk_identity, no_application_protocol); its
    message still says "alert".
    """
    if not isinstance(exc, ssl.SSLError) or isinstance(
        exc, ssl.SSLCertVerificationError
    ):
        return False
    reason = getattr(exc, "reason", None)
    if reason is None:
        return " alert " in str(exc)
    return reason.startswith(_ALERT_PREFIXES) or reason in _UNPREFIXED_ALERTS


def is_lost_session_alert(exc: BaseException) -> bool:
    """True when *exc* is a server's TLS alert that does not refuse this client.

    Such an alert (internal_error from a server under load, bad_record_mac...)
    ends that one session, during the handshake or after it: a lost connection,
    which another attempt may get past.
    """
    return is_tls_alert(exc) and not is_tls_refusal(exc)


def lost_session_message(exc: ssl.SSLError, endpoint: Endpoint, *, where: str) -> str:
    """Describe a TLS session that a server's alert (not a refusal) ended."""
    # OpenSSL's text for an alert it has no name for: "[SSL] tlsv1 alert ...".
    text = str(exc).split(" (_ssl.c:")[0].removeprefix("[SSL] ")
    alert = getattr(exc, "reason", None) or text
    return (
        f"connection to {endpoint} lost {where}: the server sent a TLS alert "
        f"({alert}), which does not refuse this client's settings; another "
        "attempt may succeed"
    )


def _client_cert_refusal(reason: str, client_cert: str | None) -> str | None:
    """Say what to change when the server refused the client's certificate."""
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        # TLS 1.2 servers send this for a missing client certificate, and also
        # when no cipher suite is shared: name both.
        return (
            f"the server refused the handshake ({reason}): it may require a client "
            "certificate (set client_cert and client_key) or share no cipher "
            "suite with this client"
        )
    if reason not in _CLIENT_CERT_ALERTS:
        return None
    if client_cert is None:
        return (
            "the server requires a client certificate and refused the connection "
            f"without one it accepts ({reason}); set client_cert and client_key "
            "(or load one into ssl_context)"
        )
    return (
        f"the server refused the client certificate client_cert={client_cert!r} "
        f"({reason}): check that it is the certificate the server expects, issued "
        "by a CA the server trusts, and still valid"
    )


def tls_step_text(step: str, *, after_handshake: bool) -> str:
    """Say where in TLS set-up an error came: during or after which handshake."""
    if after_handshake:
        if step == "STARTTLS":
            return "after the STARTTLS handshake"
        return "after the TLS handshake"
    return "during STARTTLS" if step == "STARTTLS" else "during the TLS handshake"


def _server_refusal(reason: str, endpoint: Endpoint) -> str | None:
    """Say what to change when the server refused this client's parameters or name."""
    if reason == _INSUFFICIENT_SECURITY:
        return (
            f"the server requires stronger TLS parameters than this client offers "
            f"({reason}); if ssl_context is set, check its ciphers and versions"
        )
    if reason == _UNRECOGNIZED_NAME:
        return (
            f"the server does not serve the name {endpoint.host!r} ({reason}); "
            "connect by a name the server is configured for"
        )
    return None


def tls_failure(
    exc: ssl.SSLError,
    endpoint: Endpoint,
    *,
    step: str,
    min_version: str | None,
    client_cert: str | None = None,
    after_handshake: bool = False,
) -> TLSError:
    """Build the ``TLSError`` for a failed handshake, saying what to change.

    Args:
        exc: What the ssl module raised: a handshake failure, or a TLS alert
            read right after the handshake (a refused client certificate).
        endpoint: The server.
        step: ``"connect"`` (implicit TLS) or ``"STARTTLS"``.
        min_version: The configured ``tls_min_version``, if any.
        client_cert: The configured ``client_cert`` path, if any.
        after_handshake: True for an alert read after the client's side of the
            handshake had completed (TLS 1.3 checks the client certificate
            then): the message says "after", not "during", the handshake.
    """
    where = tls_step_text(step, after_handshake=after_handshake)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # One built by hand (a proxy client, a test) may lack both attributes.
        detail = getattr(exc, "verify_message", None) or str(exc)
        code = getattr(exc, "verify_code", None)
        if code == _HOSTNAME_MISMATCH:
            hint = (
                f"the certificate is not valid for {endpoint.host!r} ({detail}); "
                "connect by a name the certificate lists"
            )
        elif code in _UNTRUSTED_CODES:
            hint = (
                f"the certificate is not trusted ({detail}); for a private or "
                "test CA, set ca_file to the CA's PEM file"
            )
        elif code in _EXPIRED_CODES:
            hint = f"the certificate is not valid now ({detail})"
        else:
            hint = f"certificate verification failed ({detail})"
        return TLSError(f"TLS failed with {endpoint} {where}: {hint}")
    reason = getattr(exc, "reason", None) or ""  # None when raised by hand
    if reason in _NOT_TLS_REASONS and step == "connect":
        return TLSError(
            f"{endpoint} did not answer the TLS handshake with TLS ({reason}): "
            f"the server probably sent a plaintext SMTP greeting; {_SET_STARTTLS}"
        )
    refusal = _client_cert_refusal(reason, client_cert) or _server_refusal(
        reason, endpoint
    )
    if refusal is not None:
        return TLSError(f"TLS failed with {endpoint} {where}: {refusal}")
    if reason in _NO_COMMON_VERSION_REASONS:
        limit = f" (tls_min_version={min_version})" if min_version else ""
        return TLSError(
            f"TLS failed with {endpoint} {where}: no TLS version that both "
            f"sides accept{limit} ({reason})"
        )
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        # Servers often hang up instead of sending a protocol_version alert.
        maybe = (
            f"; it may not accept tls_min_version={min_version}" if min_version else ""
        )
        return TLSError(
            f"TLS failed with {endpoint} {where}: the server closed the "
            f"connection in the handshake{maybe}"
        )
    return TLSError(f"TLS failed with {endpoint} {where}: {reason or exc}")


def no_starttls_message(endpoint: Endpoint) -> str:
    """Say that STARTTLS is missing, and when ``tls='none'`` is the answer."""
    return (
        f"{endpoint} does not offer STARTTLS, which tls='starttls' (the default, "
        "also for smtp:// URLs) requires; for a local test server such as Mailpit "
        "or MailHog use tls='none' (?tls=none in a URL), but only on loopback or "
        "a trusted network: without TLS the message and any password travel in "
        "cleartext"
    )


def auth_refused_message(reply: SMTPReply, mechanism: str, endpoint: Endpoint) -> str:
    """Say what a refused login means and what to change (never the credentials).

    A provider's documented reply gets its own hint appended by the error
    (see ``explain_reply``); this adds smtpkit's advice only where none exists.
    """
    where = f"{endpoint} refused the login (AUTH {mechanism}): {reply}"
    if explain_reply(reply) is not None:
        return where
    if reply.code == 535:  # RFC 4954 §6: authentication credentials invalid
        return (
            f"{where}; check the username and password (or token) in the "
            "configuration; a provider with two-step verification usually needs "
            "an app password instead of the account password"
        )
    if reply.code == 454:  # RFC 4954 §6: temporary authentication failure
        return f"{where}; the server could not check the credentials now, try later"
    return where


def mail_refusal(
    reply: SMTPReply, *, sender: str, logged_in: bool, is_tls: bool
) -> SMTPReplyError | None:
    """Return the error for a MAIL FROM refusal that asks for AUTH or STARTTLS.

    RFC 4954 §6 (``530 5.7.0 Authentication required``) and RFC 3207 §4
    (``530 5.7.0 Must issue a STARTTLS command first``): the session, not the
    sender, is the problem.  Returns None for any other refusal.
    """
    if reply.code != 530:
        return None
    text = reply.text.lower()
    if "starttls" in text or ("tls" in text and not is_tls):
        hint = (
            "the server requires TLS before MAIL: use tls='starttls' (the "
            "default) or tls='implicit' instead of tls='none'"
        )
    elif logged_in:
        hint = "the server still requires authentication after a successful login"
    else:
        hint = (
            "the server requires AUTH: set username and password (or auth=) "
            "in SMTPConfig"
        )
    msg = f"sender <{sender}> refused, {hint}: {reply}"
    return AuthenticationRequiredError(reply, sender=sender, message=msg)


def tls_file_problem(field: str, path: str, *, directory: bool = False) -> str | None:
    """Say why the TLS file or directory *path* of *field* cannot be read."""
    if not os.path.exists(path):
        return f"{field} {path!r} does not exist"
    if directory and not os.path.isdir(path):
        return f"{field} {path!r} is not a directory"
    if not directory and not os.path.isfile(path):
        return f"{field} {path!r} is not a file"
    if not os.access(path, os.R_OK):
        return f"{field} {path!r} cannot be read (permission denied)"
    return None


def tls_files_error(
    files: dict[str, str | None], exc: BaseException
) -> ConfigurationError:
    """Build the error for TLS files that exist but cannot be loaded."""
    named = ", ".join(f"{field} {path!r}" for field, path in files.items() if path)
    return ConfigurationError(f"cannot load TLS certificates from {named}: {exc}")
