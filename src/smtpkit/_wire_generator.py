"""The ``BytesGenerator`` that writes smtpkit's messages: raw 8-bit, stable boundaries.

Two changes to the stdlib generator: 8-bit text carried as surrogate escapes is
written out as the bytes it stands for, and a multipart boundary is derived
from the message's Message-ID and Date instead of drawn at random, so the same
message renders to the same bytes (``smtpkit.render`` promises that when
Message-ID and Date are given), and a boundary tells nothing about the body.
"""

from __future__ import annotations

import hashlib
import re
from email.generator import BytesGenerator
from email.message import Message
from typing import TYPE_CHECKING, Final

from typing_extensions import Self, override

if TYPE_CHECKING:
    # typeshed's type of clone()'s file (str, even on BytesGenerator)
    from _typeshed import SupportsWrite

__all__ = ["WireGenerator"]

_EOL_RE: Final = re.compile(r"\r\n|\r|\n")
_BOUNDARY_HEX: Final = 24  # 96 bits of the digest: "=" * 15 + 24 + "==" is 41 chars
# Where a candidate boundary occurs: 15 "=", its digest (lowercase hex), "==".
_CANDIDATE_RE: Final = re.compile(rb"(?=={15}([0-9a-f]{%d})==)" % _BOUNDARY_HEX)


class WireGenerator(BytesGenerator):
    """``BytesGenerator`` for the DATA bytes (see the module docstring)."""

    _boundaries: _Boundaries | None = None  # set by the first flatten()

    def _encode(self, s: str) -> bytes:  # private stdlib hook
        return s.encode("ascii", "surrogateescape")

    def _write_lines(self, lines: str) -> None:  # private stdlib hook
        # The stdlib (3.10 to 3.13 alike) splits the text and writes each line
        # and each line end separately, two encodes and writes per line; one of
        # each gives the same bytes: every line end becomes the policy's, and a
        # last line without one stays so.
        if not lines:
            return
        nl = self._NL  # type: ignore[attr-defined]  # set by flatten(), untyped
        text = _EOL_RE.sub(nl, lines) if "\r" in lines else lines.replace("\n", nl)
        try:
            self.write(text)
        except UnicodeEncodeError:  # nothing was written: the stdlib's own error
            super()._write_lines(lines)  # type: ignore[misc]  # untyped hook

    @override
    def flatten(
        self, msg: Message, unixfrom: bool = False, linesep: str | None = None
    ) -> None:
        if self._boundaries is None:  # the whole message: its clones share this
            self._boundaries = _Boundaries(msg)
        super().flatten(msg, unixfrom, linesep)

    @override
    def clone(self, fp: SupportsWrite[str]) -> Self:  # writes each part
        clone = super().clone(fp)
        clone._boundaries = self._boundaries
        return clone

    def _make_boundary(self, text: bytes | None = None) -> str:  # stdlib hook
        """The next multipart's boundary (see :class:`_Boundaries`)."""
        if self._boundaries is None:  # pragma: no cover - flatten() sets it first
            self._boundaries = _Boundaries(Message())
        return self._boundaries.make(text or b"")


class _Boundaries:
    """The multipart boundaries of one message: public data in, no body out.

    A boundary is written in a header, so it must not be derived from the body:
    any function of the body and public data lets a reader of the headers test
    guesses of a short secret in it (a 6-digit login code falls to a million
    hashes).  Each one is a digest of the Message-ID, the Date and the
    multipart's position in the tree (children come first, so positions follow
    the order the generator finishes them), which the headers show anyway: the
    same message renders to the same bytes, and a generated (random) Message-ID
    makes the boundaries unpredictable too.

    A body may still hold the boundary (a crafted one, or a forwarded copy of
    this very message): the boundary may occur nowhere in the parts it
    separates (RFC 2046 §5.1.1; not only as a whole line, since the stdlib's
    check looks only for lines ending in a bare LF, which a CRLF message never
    has), and smtpkit also keeps it out of every other part and boundary of
    the message (an attached message/rfc822 keeps its own boundaries), so a
    digest of the next attempt number is tried until one is free.  Which
    attempt wins depends on the body only when the body holds the earlier
    candidates, which its author must already know.
    """

    __slots__ = ("_payloads", "_position", "_seed", "_taken")

    def __init__(self, msg: Message) -> None:
        message_id = str(msg.get("Message-ID", ""))
        date = str(msg.get("Date", ""))
        self._seed = f"smtpkit boundary\0{message_id}\0{date}".encode(
            "utf-8", "surrogateescape"
        )
        self._position = 0
        # The digests of the boundaries given so far are taken, and so is any
        # boundary-shaped text in a part's payload: an attached message/rfc822
        # is a payload string here, with boundaries of its own that a sibling
        # multipart must not reuse.  (smtpkit builds every multipart itself:
        # none has a boundary yet.)
        self._taken: set[bytes] = set()
        self._payloads: set[bytes] = set()
        for part in msg.walk():
            payload = part.get_payload()
            if isinstance(payload, str):
                # Any str encodes so; a candidate is ASCII, found all the same.
                self._payloads |= _digests_in(payload.encode("utf-8", "surrogatepass"))

    def make(self, content: bytes) -> str:
        """A boundary for the next multipart, found nowhere in its *content*.

        The content is scanned once for every boundary-shaped string in it,
        so crafted content holding many of the candidates in turn costs one
        digest per candidate, not one scan of the content each.
        """
        position, self._position = self._position, self._position + 1
        taken = _digests_in(content)
        attempt = 0
        while True:
            key = b"%s\0%d\0%d" % (self._seed, position, attempt)
            digest = hashlib.sha256(key).hexdigest()[:_BOUNDARY_HEX].encode()
            if not (
                digest in taken or digest in self._taken or digest in self._payloads
            ):
                self._taken.add(digest)
                return f"==============={digest.decode()}=="
            attempt += 1


def _digests_in(text: bytes) -> set[bytes]:
    """The digest of every candidate boundary *text* holds, overlapping ones too.

    A candidate occurs in *text* exactly where this pattern matches (a
    lookahead, so "==...==" sharing its "==" with the next one is found too).
    """
    return {found[1] for found in _CANDIDATE_RE.finditer(text)}
