"""DKIM signing (RFC 6376): ``Mailer(config, signer=DKIMSigner.from_pem_file(...))``.

Install it with the ``dkim`` extra (``pip install "pysmtpkit[dkim]"``): dkimpy
does the canonicalisation and the signature, RSA-SHA256 or Ed25519-SHA256
(RFC 8463, with PyNaCl).  See docs/guide/dkim.md.
"""

from __future__ import annotations

try:
    import dkim  # noqa: F401 - only to say which extra is missing
except ImportError as exc:  # pragma: no cover - the test extra installs dkimpy
    msg = 'smtpkit.contrib.dkim needs dkimpy: pip install "pysmtpkit[dkim]"'
    raise ImportError(msg) from exc

from ._signer import DEFAULT_HEADERS, Algorithm, Canonicalization, DKIMSigner

__all__ = ["DEFAULT_HEADERS", "Algorithm", "Canonicalization", "DKIMSigner"]

DKIMSigner.__module__ = __name__
