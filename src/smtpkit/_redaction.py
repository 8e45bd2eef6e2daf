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
# An enhanced status code opening a continuation line ("535 5.7.8 ...").
_STATUS_RE: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\s+")


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
        (all of a shorter form).  Every complete occurrence is hidden, and from
        each place where a piece starts, the longest piece found there, each one
        searched for on its own, so a piece that stops short never hides a
        longer one starting a character later (``"a" + secret`` for a secret
        starting with ``"a"``).
        """
        return _hide(text, self._spans(text))

    def redact_lines(self, text: str) -> str:
        """:meth:`redact` for a multiline reply, which may split a secret across lines.

        A server quoting what it was sent may wrap it onto the next reply line
        ("535-5.7.8 bad AGFsaWNlAEh1" / "535 5.7.8 bnRlcjJzZWNyZXQ="): the
        lines are searched as one text, without their line breaks, the blanks
        around them and a continuation line's enhanced status code, and what is
        found is hidden on each line it spans.  Line breaks, status codes and
        the server's other words stay.
        """
        if "\n" not in text:
            return self.redact(text)
        joined: list[str] = []
        where: list[int] = []  # where each character of the joined text is
        offset = 0
        for number, line in enumerate(text.split("\n")):
            start = len(line) - len(line.lstrip())
            if number:
                status = _STATUS_RE.match(line, start)
                start = start if status is None else status.end()
            kept = line[start:].rstrip()
            joined.append(kept)
            where += range(offset + start, offset + start + len(kept))
            offset += len(line) + 1
        hidden = [False] * len(text)
        for begin, end in self._spans("".join(joined)):
            for index in where[begin:end]:
                hidden[index] = True
        # A line break is never hidden (no index above names one): each line
        # keeps its own "***".
        pieces: list[str] = []
        for index, char in enumerate(text):
            if not hidden[index]:
                pieces.append(char)
            elif not index or not hidden[index - 1]:
                pieces.append(REDACTED)
        return "".join(pieces)

    def _spans(self, text: str) -> list[list[int]]:
        """The ``[start, end)`` stretches of *text* to hide, in order, disjoint."""
        if self._whole is None or self._heads is None:
            return []
        found = [[m.start(), m.end()] for m in self._whole.finditer(text)]
        hit = self._heads.search(text)
        while hit is not None:
            start = hit.start()
            end = max(_shown_until(text, start, form) for form in self.forms)
            found.append([start, end])
            hit = self._heads.search(text, start + 1)
        spans: list[list[int]] = []
        for start, end in sorted(found):
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        return spans


def _hide(text: str, spans: list[list[int]]) -> str:
    """*text* with each of the ordered, disjoint *spans* replaced by ``***``."""
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
