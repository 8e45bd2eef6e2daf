"""The ``ssl.SSLContext`` an ``SMTPTransport`` uses, built once from its config.

File problems (a missing CA file, a key that does not match its certificate)
become ``ConfigurationError`` naming the setting, at construction, not at the
first send.
"""

from __future__ import annotations

import ssl
from typing import Final

from .._config import SMTPConfig
from .._exceptions import ConfigurationError
from ._hints import tls_file_problem, tls_files_error

__all__ = ["build_tls_context"]

_TLS_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def build_tls_context(cfg: SMTPConfig) -> ssl.SSLContext:
    """Return *cfg*'s own ``ssl_context``, or one built from its TLS settings.

    Raises:
        ConfigurationError: A certificate or key file cannot be loaded.
    """
    if cfg.ssl_context is not None:
        return cfg.ssl_context
    files = {
        "ca_file": cfg.ca_file,
        "ca_path": cfg.ca_path,
        "client_cert": cfg.client_cert,
        "client_key": cfg.client_key,
    }
    for field, path in files.items():
        problem = path and tls_file_problem(field, path, directory=field == "ca_path")
        if problem:
            msg = f"cannot load TLS certificates: {problem}"
            raise ConfigurationError(msg)
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file, capath=cfg.ca_path)
    except (OSError, ssl.SSLError) as exc:
        trust = {"ca_file": cfg.ca_file, "ca_path": cfg.ca_path}
        raise tls_files_error(trust, exc) from exc
    if cfg.client_cert is not None:
        try:
            context.load_cert_chain(cfg.client_cert, cfg.client_key)
        except (OSError, ssl.SSLError) as exc:
            client = {"client_cert": cfg.client_cert, "client_key": cfg.client_key}
            raise tls_files_error(client, exc) from exc
    if cfg.tls_min_version is not None:
        context.minimum_version = _TLS_VERSIONS[cfg.tls_min_version]
    return context
