"""The ``smtpkit`` command line: ``check``, ``send`` and ``render``.

One module per command; ``_server`` turns the URL, environment and prompt into
a config, ``_compose`` the message options into messages, ``_output`` writes
with the password hidden, and ``_exit`` maps errors to exit codes.  Only the
standard library's argparse parses the command line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Final, NoReturn, cast

from pydantic import ValidationError
from typing_extensions import override

from .. import __version__
from .._exceptions import SMTPKitError
from . import check, render, send
from ._exit import (
    STARTTLS_ADVICE,
    ExitCode,
    UsageError,
    advice_for,
    exit_code_for,
    input_errors,
    is_starttls_failure,
)
from ._output import Output
from ._server import ENV_PASSWORD, ENV_URL, ENV_USERNAME, Prompt, Server, load_server

__all__ = ["main"]

# What follows a scheme: in an argparse error it may be a URL with a password.
_URL_RE: Final = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"]*")

_DESCRIPTION = f"""\
Check an SMTP server's settings, send test messages, render messages to .eml.

credentials: in the URL (percent-encoded: me%40example.com), or from
${ENV_USERNAME} and ${ENV_PASSWORD}, or typed at --prompt-password (never
echoed, never in shell history).  ${ENV_URL} is the URL when none is given.
The password is never printed: a URL shown back reads smtp://user:***@host.
"""


class _ParseError(Exception):
    """argparse's usage error, raised so that ``main`` prints it redacted."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors ``main`` prints (argparse quotes argv).

    "unrecognized arguments: smtp://me:s3cret@host" would show the password:
    the error goes through :func:`_parse_error` instead of straight to stderr.
    Subparsers are made of the same class.
    """

    @override
    def error(self, message: str) -> NoReturn:
        raise _ParseError(self, message)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line."""
    parser = _Parser(
        prog="smtpkit",
        description=_DESCRIPTION,
        epilog="Run smtpkit COMMAND --help for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smtpkit {__version__}")
    # Typed by the class of its parsers (_Parser); each command only needs an
    # ArgumentParser, and the generic is invariant.
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    check.add_parser(subparsers)
    send.add_parser(subparsers)
    render.add_parser(subparsers)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Prompt = getpass.getpass,
    output: Output | None = None,
) -> int:
    """Run the command line; return the exit code (see ``ExitCode``).

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` by default.
        environ: The environment; ``os.environ`` by default.
        prompt: Asks for the password without echo (``getpass.getpass``).
        output: Where to write; stdout and stderr by default.
    """
    output = Output() if output is None else output
    env = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(argv)
    except _ParseError as exc:
        return _parse_error(exc, output, sys.argv[1:] if argv is None else argv, env)
    server: Server | None = None
    try:
        if args.command == "render":
            return render.run(args, output)
        with input_errors("the server settings"):
            server = load_server(args, output, environ=env, prompt=prompt)
        if args.command == "check":
            return check.run(args, output, server)
        return send.run(args, output, server)
    except (SMTPKitError, UsageError, ValidationError) as exc:
        return _fail(args, output, exc, server)
    except KeyboardInterrupt:
        output.err("interrupted")
        return ExitCode.INTERRUPTED


def _parse_error(
    exc: _ParseError, output: Output, argv: Sequence[str], environ: Mapping[str, str]
) -> ExitCode:
    """Print argparse's usage error with every URL and known password hidden."""
    output.hide(environ.get(ENV_PASSWORD), *(arg for arg in argv if "://" in arg))
    exc.parser.print_usage(output.stderr)
    message = _URL_RE.sub(r"\1***", output.redact(exc.message))
    output.err(f"{exc.parser.prog}: error: {message}")
    return ExitCode.CONFIG


def _fail(
    args: argparse.Namespace, output: Output, exc: Exception, server: Server | None
) -> ExitCode:
    """Print the error sentence and its advice; return the exit code."""
    code = exit_code_for(exc)
    sentence = describe(exc)
    advice = advice_for(code)
    url = None if server is None else server.shown_url
    if is_starttls_failure(exc) and server is not None:
        # "STARTTLS refused: 454 ..." names no server: say which one.
        advice = STARTTLS_ADVICE
        sentence = f"{server.config.host}:{server.config.port}: {sentence}"
    if getattr(args, "json", False):
        error = {"type": type(exc).__name__, "message": sentence, "advice": advice}
        document = {"ok": False, "url": url, "exit_code": int(code), "error": error}
        output.out(json.dumps(document, indent=2, ensure_ascii=False))
    output.err(f"smtpkit {args.command}: error: {sentence}")
    if advice is not None:
        output.err(f"what to do: {advice}")
    return code


def describe(exc: Exception) -> str:
    """The error's own sentence; for a validation error, each field's problem."""
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        return "invalid value: " + "; ".join(problems)
    return str(exc)
