"""``python -m smtpkit``: the same command line as the ``smtpkit`` script."""

from __future__ import annotations

from smtpkit._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
