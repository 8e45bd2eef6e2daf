"""``smtpkit render``: write the exact bytes a send would transmit, and a preview."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from .. import render
from ._compose import add_message_arguments, build_message
from ._exit import ExitCode, UsageError, input_errors
from ._output import Output
from ._preview import NoHTMLError, preview_html

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  smtpkit render --from me@example.com --to you@example.com --subject Hi \\
      --text body.txt --html body.html --inline logo.png -o hi.eml --preview hi.html
  smtpkit render --from me@example.com --to you@example.com --text - -o - < body.txt

The preview is the HTML part with each cid: image turned into a data: URI, so a
browser shows it as a mail client would.  Exit codes: 0 ok, 2 bad options or files.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``render`` command."""
    parser = subparsers.add_parser(
        "render",
        help="write the message as .eml (the bytes a send would transmit) and a preview",
        description=textwrap.fill(
            "Render a message to the exact bytes a send would transmit, minus the "
            "envelope (Bcc is never in them).  Connects to nothing.",
            width=78,
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_message_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        required=True,
        help="the .eml file, or - for stdout",
    )
    parser.add_argument("--preview", metavar="FILE", help="also write an HTML preview")
    parser.add_argument(
        "--message-id-domain",
        metavar="DOMAIN",
        help="the domain of the generated Message-ID (default: the sender's)",
    )


def run(args: argparse.Namespace, output: Output) -> ExitCode:
    """Render the message and write the files.

    Raises:
        UsageError: A file cannot be read or written, or there is no HTML to preview.
        pydantic.ValidationError: The message options are invalid.
    """
    with input_errors("the message files"):
        message = build_message(args)
    data = render(message, message_id_domain=args.message_id_domain)
    preview = None
    if args.preview is not None:
        try:
            preview = preview_html(data)
        except NoHTMLError as exc:
            raise UsageError(str(exc)) from None
    _write(args.output, data, output)
    if preview is not None and args.preview is not None:
        _write(args.preview, preview, output)
    return ExitCode.OK


def _write(path: str, data: bytes, output: Output) -> None:
    if path == "-":
        output.stdout.flush()
        output.stdout.buffer.write(data)
        output.stdout.buffer.flush()
        return
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise UsageError(msg) from None
    output.err(f"wrote {path} ({len(data)} bytes)")
