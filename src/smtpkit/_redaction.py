"""Find and hide known secrets in the text of an error, however it quotes them.

Errors raised by a caller's SASL code (a custom ``Auth``, a token provider)
may quote a credential: ``int(password)`` shows it, a token endpoint's error
quotes the JSON or form body it sent, and messages cut what they quote
(``int()`` shows 200 characters), so a cut OAuth2 token still leaks most of
itself.  :class:`SecretForms` knows each secret as such a text may show it,
and finds every piece of one in time linear in the text.  Pure stdlib.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "SHOWN_MIN", "SecretForms"]

REDACTED: Final = "***"
# How many characters of the start of a form (all of a shorter form) count as
# showing it: fewer would hide ordinary words ("password missing" for the
# secret "password-2024-Long!"), and 12 characters of a random token are
# already too much to show.
SHOWN_MIN: Final = 12


def _forms_of(secret: str) -> set[str]:
    """*secret* as text may show it: as is, and as each usual escaping writes it."""
    raw = secret.encode("utf-8", "surrogatepass")
    return {
        secret,
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
        repr(raw)[2:-1],
        json.dumps(secret)[1:-1],  # a JSON body: \" \\ \uXXXX
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe="", errors="surrogatepass"),  # a form body, a query
        quote(secret, errors="surrogatepass"),  # a path: "/" kept ("1//0g...")
        quote_plus(secret, errors="surrogatepass"),
    }


class SecretForms:
    """Some secrets, each in every form a text may show it.

    Args:
        secrets: The secrets; empty ones are ignored.
    """

    __slots__ = ("_heads", "_whole", "forms")

    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[str] = set()
        for secret in secrets:
            if secret:
                found |= _forms_of(secret)
        # Longest first: where forms start alike, the longest one is hidden.
        self.forms: tuple[str, ...] = tuple(sorted(found, key=len, reverse=True))
        heads = sorted({form[:SHOWN_MIN] for form in self.forms}, key=len, reverse=True)
        self._whole = _alternation(self.forms)
        self._heads = _alternation(heads)

    def __repr__(self) -> str:
        return f"<SecretForms: {len(self.forms)} forms>"  # never the secrets

    def shown_in(self, text: str) -> bool:
        """True when *text* shows a piece of a secret (see :meth:`redact`)."""
        return self._heads is not None and self._heads.search(text) is not None

    def redact(self, text: str) -> str:
        """*text* with every piece of a secret that it shows replaced by ``***``.

        A piece is any start of a form at least ``SHOWN_MIN`` characters long
        (all of a shorter form).  Every complete occurrence goes first; then
        each place where a piece starts, each one searched for on its own, so a
        piece that stops short never hides a longer one starting a character
        later (``"a" + secret`` for a secret starting with ``"a"``).
        """
        if self._whole is None or self._heads is None:
            return text
        text = self._whole.sub(REDACTED, text)
        spans: list[list[int]] = []  # [start, end) to hide, in order, disjoint
        hit = self._heads.search(text)
        while hit is not None:
            start = hit.start()
            end = max(_shown_until(text, start, form) for form in self.forms)
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
            hit = self._heads.search(text, start + 1)
        pieces: list[str] = []
        done = 0
        for start, end in spans:
            pieces += [text[done:start], REDACTED]
            done = end
        return "".join(pieces) + text[done:]


def _alternation(literals: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching any of *literals*, the first listed winning a tie."""
    escaped = [re.escape(literal) for literal in literals]
    return re.compile("|".join(escaped)) if escaped else None


def _shown_until(text: str, start: int, form: str) -> int:
    """Where the longest start of *form* found at *text*[start] ends (start: none).

    Starts shorter than ``SHOWN_MIN`` (all of a shorter form) do not count.
    Found by bisection: each test is one ``startswith`` in C.
    """
    low = min(len(form), SHOWN_MIN)
    if not text.startswith(form[:low], start):
        return start
    high = min(len(form), len(text) - start)
    while low < high:  # text[start:start + low] shows form[:low]; find the most
        middle = (low + high + 1) // 2
        if text.startswith(form[:middle], start):
            low = middle
        else:
            high = middle - 1
    return start + low
