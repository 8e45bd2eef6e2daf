"""The server to talk to: URL, credentials and TLS settings from the command line.

Where each setting comes from, first found wins:

* the URL: the ``URL`` argument, else ``$SMTP_URL``;
* the user name: the URL's, else ``$SMTP_USERNAME``;
* the password: the prompt (``--prompt-password``), else the URL's, else
  ``$SMTP_PASSWORD``.

The password is never echoed and never printed: the URL shown back has it as
``***``, and :class:`~smtpkit._cli._output.Output` hides it everywhere else.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._config import SMTPConfig
from .._exceptions import ConfigurationError
from .._url import smtp_url_fields
from ._exit import UsageError
from ._output import Output

__all__ = ["ENV_PASSWORD", "ENV_URL", "ENV_USERNAME", "Server", "add_server_arguments"]

ENV_URL = "SMTP_URL"
ENV_USERNAME = "SMTP_USERNAME"
ENV_PASSWORD = "SMTP_PASSWORD"  # noqa: S105 - the variable's name, not a password
_SECRET_QUERY_KEYS = frozenset({"password", "username"})

Prompt = Callable[[str], str]


@dataclass(frozen=True)
class Server:
    """A validated config and the URL to show for it (password hidden)."""

    config: SMTPConfig
    shown_url: str


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``URL`` and ``--prompt-password`` to a command's parser."""
    parser.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help=(
            "smtp://[USER[:PASSWORD]@]HOST[:PORT] (STARTTLS, port 587) or smtps://... "
            "(implicit TLS, port 465); options go in the query: ?timeout=10&"
            f"ca_file=ca.pem&tls=none.  Default: ${ENV_URL}"
        ),
    )
    parser.add_argument(
        "--prompt-password",
        action="store_true",
        help=(
            "ask for the password without echoing it (not stored in shell history); "
            f"otherwise the URL's password or ${ENV_PASSWORD} is used"
        ),
    )


def load_server(
    args: argparse.Namespace,
    output: Output,
    *,
    environ: Mapping[str, str],
    prompt: Prompt = getpass.getpass,
) -> Server:
    """Build the config of the server named on the command line.

    Raises:
        UsageError: No URL was given.
        ConfigurationError: The URL or its settings are invalid, or the user
            name has no password.
        pydantic.ValidationError: A setting has an invalid value.
    """
    url: str | None = args.url or environ.get(ENV_URL) or None
    if url is None:
        msg = f"give the server as URL (smtp://HOST or smtps://HOST) or set ${ENV_URL}"
        raise UsageError(msg)
    fields: dict[str, Any] = smtp_url_fields(url)
    output.hide(fields.get("password"), _raw_password(url))
    fields.setdefault("username", environ.get(ENV_USERNAME) or None)
    if args.prompt_password:
        if fields["username"] is None:
            msg = (
                "--prompt-password needs a user name: put it in the URL "
                f"(smtp://USER@HOST) or set ${ENV_USERNAME}"
            )
            raise UsageError(msg)
        try:
            fields["password"] = prompt(f"Password for {fields['username']}: ")
        except EOFError:  # no terminal and stdin at its end: nothing was typed
            msg = (
                "--prompt-password got no password (stdin ended, no terminal): run "
                f"it in a terminal, or set ${ENV_PASSWORD} instead"
            )
            raise UsageError(msg) from None
    else:
        fields.setdefault("password", environ.get(ENV_PASSWORD) or None)
    output.hide(fields["password"])
    if fields["username"] is not None and fields["password"] is None:
        msg = (
            "a user name is set but no password: use --prompt-password, set "
            f"${ENV_PASSWORD}, or put it (percent-encoded) in the URL"
        )
        raise ConfigurationError(msg)
    if fields["username"] is None and fields["password"] is not None:
        msg = f"a password needs a user name: put it in the URL or set ${ENV_USERNAME}"
        raise ConfigurationError(msg)
    return Server(SMTPConfig(**fields), shown_url(url))


def _raw_password(url: str) -> str | None:
    """The password as written in the URL (percent-encoded), to hide that too."""
    return urlsplit(url).password


def shown_url(url: str) -> str:
    """*url* with its password, and any password in the query, as ``***``.

    Only called on a URL that ``smtp_url_fields`` accepted, so it splits.
    """
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username is not None:
        secret = ":***" if parts.password is not None else ""
        netloc = f"{parts.username}{secret}@{netloc}"
    query = urlencode(
        [
            (key, "***" if key in _SECRET_QUERY_KEYS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="/:*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
