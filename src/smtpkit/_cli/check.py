"""``smtpkit check URL``: log in as a send would, report what the server offers."""

from __future__ import annotations

import argparse
import json
import textwrap

from .._mailer import Mailer
from ._exit import ExitCode
from ._output import Output
from ._server import Server, add_server_arguments

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  smtpkit check smtps://me%40qq.com@smtp.qq.com --prompt-password
  SMTP_PASSWORD=... smtpkit check smtp://me%40example.com@mail.example.com --json
  smtpkit check 'smtp://localhost:2525?tls=none'

exit codes: 0 ok, 2 bad URL or settings, 3 cannot connect or TLS failed,
4 the server refused the credentials, 1 any other failure.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` command."""
    parser = subparsers.add_parser(
        "check",
        help="connect, STARTTLS and log in as a send would, then report; sends no mail",
        description=textwrap.fill(
            "Open one session exactly as a send would (connect, greeting, EHLO, "
            "STARTTLS, EHLO, AUTH), QUIT, and print what the server offers: "
            "banner, extensions, size limit, TLS version and certificate, the AUTH "
            "mechanism used and the time each step took.  Sends no mail.",
            width=78,
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, output: Output, server: Server) -> ExitCode:
    """Verify the server and print the report.

    Raises:
        SMTPKitError: The check failed (the caller maps it to an exit code).
    """
    with Mailer(server.config) as mailer:
        report = mailer.verify()
    if args.json:
        document = {"ok": True, "url": server.shown_url, **report.as_dict()}
        output.out(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        output.out(f"url: {server.shown_url}")
        output.out(str(report))
        output.out("ok: the server accepted the connection and the login")
    return ExitCode.OK
