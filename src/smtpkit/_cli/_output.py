"""Where the command writes, with every form of the password hidden.

The library keeps credentials out of its errors; this is the second lock: a
server that quotes the password in a reply, or a future message that does,
still shows ``***`` on the terminal, in ``--json`` and in redirected output.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .._redaction import SecretForms

__all__ = ["Output"]

# A shorter password would be hidden inside ordinary words ("a" in every
# "accepted"), leaving every sentence unreadable; such a password is no secret.
_MIN_HIDDEN = 4


class Output:
    """stdout and stderr of one command run, redacting the known secrets.

    Args:
        stdout: Where results go.
        stderr: Where errors, advice, prompts and progress go.
    """

    def __init__(
        self, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self._secrets: list[str] = []
        self._forms = SecretForms(())

    def hide(self, *secrets: str | None) -> None:
        """Hide *secrets* (each as quoted, escaped or percent-encoded) from now on."""
        self._secrets += [s for s in secrets if s is not None and len(s) >= _MIN_HIDDEN]
        self._forms = SecretForms(self._secrets)

    def redact(self, text: str) -> str:
        """*text* with every known secret replaced by ``***``."""
        return self._forms.redact(text)

    def out(self, text: str) -> None:
        """Write one line of results to stdout."""
        self.stdout.write(self.redact(text) + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        """Write one line to stderr."""
        self.stderr.write(self.redact(text) + "\n")
        self.stderr.flush()

    def status(self, text: str) -> None:
        """Overwrite the status line on stderr (a terminal only; see ``is_tty``)."""
        self.stderr.write("\r\x1b[K" + self.redact(text))
        self.stderr.flush()

    @property
    def is_tty(self) -> bool:
        """True when stderr is a terminal, where a progress display belongs."""
        isatty = getattr(self.stderr, "isatty", None)
        return bool(isatty and isatty())
