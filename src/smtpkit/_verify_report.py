"""`VerifyReport`: what ``Mailer.verify()`` learnt about a server, as a value.

Pure standard library: the transport fills it in, the command line prints it
(``str()``) or dumps it (``as_dict()``).  It never holds a credential: the
only thing it says about logging in is the mechanism used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Final

__all__ = ["VERIFY_STEPS", "VerifyReport"]

VERIFY_STEPS: Final = (
    "connect",
    "greeting",
    "ehlo",
    "starttls",
    "ehlo after tls",
    "auth",
    "quit",
)
"""The steps ``verify()`` times, in the order they run."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """One session's facts: banner, extensions, TLS, login and timings.

    Returned by ``Mailer.verify()``; the session was opened exactly as a send
    opens one (connect, greeting, EHLO, STARTTLS, EHLO, AUTH) and ended with
    QUIT, and no mail was sent.

    Attributes:
        host: The server, as configured.
        port: The TCP port.
        banner: The text of the server's 220 greeting (without the code).
        extensions: The EHLO extensions (the last EHLO: after STARTTLS, the
            ones offered under TLS), lower-case names as smtplib gives them,
            each with its parameters (``{"size": "35882577", "pipelining": ""}``).
            A read-only mapping (a copy of what was given), as the report is
            frozen.
        size_limit: The SIZE limit in bytes (RFC 1870), or None when the server
            announces none (or ``SIZE 0``, which means no fixed limit).
        pipelining: PIPELINING offered (RFC 2920).
        chunking: CHUNKING offered (RFC 3030).
        smtputf8: SMTPUTF8 offered (RFC 6531).
        starttls_used: The session was upgraded with STARTTLS.
        tls_version: ``"TLSv1.3"`` and the like, or None without TLS.
        cipher: The cipher suite name, or None without TLS.
        certificate_subject: The server certificate's subject
            (``"CN=mail.example.com, O=Example"``), or None without TLS or when
            the certificate was not verified (Python then does not decode it).
        certificate_expires: When that certificate expires (UTC), or None.
        auth_mechanism: The SASL mechanism that logged in, or None without AUTH.
        timings: ``(step, seconds)`` for each step that ran, in order: from
            "connect", "greeting", "ehlo", "starttls", "ehlo after tls",
            "auth", "quit".  "connect" includes an implicit-TLS handshake.
    """

    host: str
    port: int
    banner: str
    extensions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    size_limit: int | None = None
    pipelining: bool = False
    chunking: bool = False
    smtputf8: bool = False
    starttls_used: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    certificate_subject: str | None = None
    certificate_expires: datetime | None = None
    auth_mechanism: str | None = None
    timings: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # A copy, read-only: a frozen report that shares or hands out a dict
        # could still be changed under its holders.
        extensions = MappingProxyType(dict(self.extensions))
        object.__setattr__(self, "extensions", extensions)

    def __reduce__(self) -> tuple[type[VerifyReport], tuple[object, ...]]:
        # A mappingproxy does not pickle: rebuild from a plain dict.
        values = tuple(
            dict(self.extensions)
            if item.name == "extensions"
            else getattr(self, item.name)
            for item in fields(self)
        )
        return type(self), values

    @property
    def total_time(self) -> float:
        """Seconds for the whole session, every step together."""
        return sum(seconds for _, seconds in self.timings)

    def as_dict(self) -> dict[str, object]:
        """Return the report as JSON-safe values.

        ``certificate_expires`` becomes an ISO 8601 string, ``timings`` an
        object mapping each step to its seconds, in order.
        """
        expires = self.certificate_expires
        return {
            "host": self.host,
            "port": self.port,
            "banner": self.banner,
            "extensions": dict(self.extensions),
            "size_limit": self.size_limit,
            "pipelining": self.pipelining,
            "chunking": self.chunking,
            "smtputf8": self.smtputf8,
            "starttls_used": self.starttls_used,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "certificate_subject": self.certificate_subject,
            "certificate_expires": None if expires is None else expires.isoformat(),
            "auth_mechanism": self.auth_mechanism,
            "timings": dict(self.timings),
        }

    def __str__(self) -> str:
        """One fact per line, for people (``smtpkit check`` prints this)."""
        lines = [
            f"server: {_host_port(self.host, self.port)}",
            f"banner: {self.banner}" if self.banner else "banner: (empty)",
        ]
        if self.tls_version is None:
            lines.append("TLS: none")
        else:
            how = "STARTTLS" if self.starttls_used else "implicit"
            lines.append(f"TLS: {self.tls_version} ({how}), cipher {self.cipher}")
        if self.certificate_subject is not None:
            lines.append(f"certificate: {self.certificate_subject}")
        if self.certificate_expires is not None:
            lines.append(f"certificate expires: {self.certificate_expires.isoformat()}")
        lines.append(f"login: {self.auth_mechanism or 'none'}")
        limit = "none" if self.size_limit is None else f"{self.size_limit} bytes"
        lines.append(f"size limit: {limit}")
        for name, offered in (
            ("pipelining", self.pipelining),
            ("chunking", self.chunking),
            ("smtputf8", self.smtputf8),
        ):
            lines.append(f"{name}: {'yes' if offered else 'no'}")
        names = sorted(
            f"{name.upper()} {params}".rstrip()
            for name, params in self.extensions.items()
        )
        lines.append(f"extensions: {', '.join(names) or 'none (HELO)'}")
        lines.extend(
            f"time {step}: {seconds * 1000:.1f} ms" for step, seconds in self.timings
        )
        return "\n".join(lines)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
