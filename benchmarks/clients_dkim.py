"""The DKIM rows: ``send_many`` through a DKIM-signing ``Mailer``, beside ``smtpkit-1``/``-8``.

Each row builds every ``smtpkit.Message`` inside the timed run (like ``smtpkit-1``
and ``smtpkit-8``) and sends it through ``Mailer(signer=DKIMSigner(...))``, with a
throw-away RSA-2048 or Ed25519 key made once per process (``cryptography``, from
the test extra).  The ratio to the unsigned row of the same pool size is the cost
of signing.  dkimpy is pure Python: an RSA-2048 signature is a modular
exponentiation of Python integers (several ms of CPU under the GIL), an Ed25519 one
runs in PyNaCl's C code.
"""

from __future__ import annotations

import functools

from clients import (
    Client,
    RunFn,
    Target,
    Workload,
    build_message,
    check_results,
    smtpkit_config,
)

import smtpkit

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from smtpkit.contrib.dkim import DKIMSigner
except ImportError:  # pragma: no cover - the rows are skipped
    DKIMSigner = None  # type: ignore[assignment,misc]


def dkim_problem() -> str | None:
    """Why the DKIM rows cannot run, or None."""
    if DKIMSigner is None:
        return 'needs pip install "pysmtpkit[dkim]" cryptography'
    return None


@functools.cache
def signer(algorithm: str) -> DKIMSigner:
    """A signer with a throw-away key (made once: key generation is not timed)."""
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DKIMSigner.from_pem(pem, domain="example.com", selector="bench")


def _runner(algorithm: str) -> RunFn:
    def run(target: Target, count: int, work: Workload, connections: int) -> None:
        sign = signer(algorithm)
        messages = (build_message(i, work.body) for i in range(count))
        config = smtpkit_config(target, connections)
        with smtpkit.Mailer(config, signer=sign) as mailer:
            results = mailer.send_many(messages, concurrency=connections)
        check_results(f"smtpkit dkim {algorithm}", results, count)

    return run


DKIM_CLIENTS = {c.name: c for c in [
    Client("smtpkit-dkim-rsa-1", "build", 1, _runner("rsa"),
           "smtpkit-1 with a DKIM RSA-2048 signer", round_trips=1,
           needs="dkim", optional=True),
    Client("smtpkit-dkim-ed25519-1", "build", 1, _runner("ed25519"),
           "smtpkit-1 with a DKIM Ed25519 signer", round_trips=1,
           needs="dkim", optional=True),
    Client("smtpkit-dkim-rsa-8", "build", 8, _runner("rsa"),
           "smtpkit-8 with a DKIM RSA-2048 signer", round_trips=1,
           needs="dkim", optional=True),
    Client("smtpkit-dkim-ed25519-8", "build", 8, _runner("ed25519"),
           "smtpkit-8 with a DKIM Ed25519 signer", round_trips=1,
           needs="dkim", optional=True),
]}  # fmt: skip
"""The DKIM rows (opt-in: name them in --clients), added to ``clients.CLIENTS``."""
