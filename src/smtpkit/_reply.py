"""SMTP replies as values: the code, the RFC 3463 enhanced status, and decoded text.

Pure stdlib and free of I/O, so every other layer can depend on it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "EnhancedStatus",
    "ReplyCode",
    "SMTPReply",
    "decode_reply_text",
    "parse_reply",
    "parse_reply_line",
]

# RFC 3463 §2: class.subject.detail, class in {2,4,5}, subject <= 3 digits, detail <= 3.
_ENHANCED_RE: Final = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")

# Servers in China (QQ Mail, 163) answer in GBK; gb18030 is its superset.  latin-1
# never fails, so it is the last resort that still shows every byte as a character.
_REPLY_ENCODINGS: Final = ("utf-8", "gb18030")


class ReplyCode(IntEnum):
    """The reply codes smtpkit gives a meaning to (RFC 5321 §4.2.3)."""

    SERVICE_READY = 220
    CLOSING = 221
    AUTH_SUCCESSFUL = 235
    OK = 250
    WILL_FORWARD = 251
    CANNOT_VRFY = 252
    AUTH_CONTINUE = 334
    START_MAIL_INPUT = 354
    SERVICE_NOT_AVAILABLE = 421
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    TEMPORARY_AUTH_FAILURE = 454
    SYNTAX_ERROR = 500
    PARAMETER_SYNTAX_ERROR = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    AUTH_FAILED = 535
    MAILBOX_UNAVAILABLE = 550
    EXCEEDED_STORAGE = 552
    MAILBOX_NAME_NOT_ALLOWED = 553
    TRANSACTION_FAILED = 554


@dataclass(frozen=True, slots=True)
class EnhancedStatus:
    """An RFC 3463 enhanced status code such as ``4.7.1``."""

    klass: int
    subject: int
    detail: int

    @classmethod
    def parse(cls, text: str) -> EnhancedStatus | None:
        """Read an enhanced status from the start of *text*, or return None."""
        match = _ENHANCED_RE.match(text)
        if match is None:
            return None
        return cls(int(match[1]), int(match[2]), int(match[3]))

    @property
    def is_transient(self) -> bool:
        """True for class 4 (persistent transient failure)."""
        return self.klass == 4

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


@dataclass(frozen=True, slots=True)
class SMTPReply:
    """One complete server reply.

    Attributes:
        code: The three-digit reply code.
        text: The reply text, all lines joined with ``"\\n"``, with the enhanced
            status code removed from the front of each line.
        enhanced: The RFC 3463 status code of the first line, when present.
    """

    code: int
    text: str = ""
    enhanced: EnhancedStatus | None = None

    @property
    def is_success(self) -> bool:
        """True for 2xx and 3xx replies."""
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """True for 4xx replies: the same command may succeed later.

        The basic code decides; RFC 3463 §3 lets the enhanced code refine the
        meaning but never turn a 4xx into a permanent failure or back.
        """
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """True for 5xx replies, and for codes outside the SMTP range."""
        return not (self.is_success or self.is_transient)

    @classmethod
    def from_string(cls, line: str) -> SMTPReply:
        """Parse ``"451 4.3.0 try later"`` into a reply (handy in tests and fakes).

        Raises:
            ValueError: The text does not start with a three-digit code.
        """
        code, _, text = line.strip().partition(" ")
        if not (len(code) == 3 and code.isdigit()):
            msg = f"an SMTP reply starts with a three-digit code: {line!r}"
            raise ValueError(msg)
        return parse_reply(int(code), text)

    def __str__(self) -> str:
        enhanced = f"{self.enhanced} " if self.enhanced is not None else ""
        return f"{self.code} {enhanced}{self.text}".rstrip()


def decode_reply_text(raw: bytes) -> str:
    """Decode reply bytes without ever failing or showing undecoded bytes."""
    for encoding in _REPLY_ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")  # pragma: no cover - gb18030 decodes nearly anything


def parse_reply(code: int, text: bytes | str) -> SMTPReply:
    """Build an :class:`SMTPReply` from a code and the raw text smtplib returns.

    Args:
        code: The reply code (smtplib uses -1 for an unreadable code).
        text: The reply lines, joined with ``"\\n"``, as bytes or str.

    Returns:
        The reply, with its enhanced status code parsed out of the first line.
    """
    return _parse_cached(code, text)


@functools.lru_cache(maxsize=512)
def parse_reply_line(line: bytes) -> SMTPReply:
    """Parse one complete single-line reply, ``b"250 2.1.5 Ok\\r\\n"``.

    The caller has checked the form: three digits, a space, a line end.
    Cached on the raw line: a session sees the same few lines over and over.
    """
    return _parse_cached(int(line[:3]), line[4:].strip(b" \t\r\n"))


# A session sees the same few replies over and over ("250 2.1.0 Ok", "354 ...");
# SMTPReply is immutable, so one parsed value can serve them all.  Unique replies
# (queue ids) only cycle through the cache.
@functools.lru_cache(maxsize=512)
def _parse_cached(code: int, text: bytes | str) -> SMTPReply:
    decoded = decode_reply_text(text) if isinstance(text, bytes) else text
    if "\n" not in decoded:  # the common single-line reply: no list to build
        match = _ENHANCED_RE.match(decoded)
        if match is None:
            return SMTPReply(code=code, text=decoded.strip())
        status = _enhanced(int(match[1]), int(match[2]), int(match[3]))
        return SMTPReply(
            code=code, text=decoded[match.end() :].strip(), enhanced=status
        )
    lines = decoded.split("\n")
    enhanced = EnhancedStatus.parse(lines[0])
    if enhanced is not None:
        lines = [_ENHANCED_RE.sub("", line, count=1) for line in lines]
    return SMTPReply(code=code, text="\n".join(lines).strip(), enhanced=enhanced)


@functools.lru_cache(maxsize=256)
def _enhanced(klass: int, subject: int, detail: int) -> EnhancedStatus:
    return EnhancedStatus(klass, subject, detail)
