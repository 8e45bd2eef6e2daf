"""The ``BytesGenerator`` that writes smtpkit's messages: raw 8-bit, stable boundaries.

Two changes to the stdlib generator: 8-bit text carried as surrogate escapes is
written out as the bytes it stands for, and a multipart boundary is derived
from the parts it separates instead of drawn at random, so the same message
renders to the same bytes (``smtpkit.render`` promises that when Message-ID
and Date are given).
"""

from __future__ import annotations

import hashlib
import re
from email.generator import BytesGenerator
from typing import Final

__all__ = ["WireGenerator"]

_EOL_RE: Final = re.compile(r"\r\n|\r|\n")
_BOUNDARY_HEX: Final = 24  # 96 bits of the digest: "=" * 15 + 24 + "==" is 41 chars


class WireGenerator(BytesGenerator):
    """``BytesGenerator`` for the DATA bytes (see the module docstring)."""

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

    @classmethod
    def _make_boundary(cls, text: bytes | str | None = None) -> str:  # stdlib hook
        """A boundary derived from the parts' bytes, and found nowhere in them.

        A digest of the parts cannot be planted in them (each part would have
        to contain a digest of itself), and the stdlib's check only looks for
        whole lines ending in a bare LF, which a CRLF message never has; so
        the boundary may not occur anywhere in the parts at all (RFC 2046
        §5.1.1), not just as a line.
        """
        data = (text or b"") if not isinstance(text, str) else text.encode()
        digest = hashlib.sha256(data).hexdigest()[:_BOUNDARY_HEX]
        boundary = candidate = f"==============={digest}=="
        counter = 0
        while candidate.encode() in data:
            candidate = f"{boundary}.{counter}"
            counter += 1
        return candidate
