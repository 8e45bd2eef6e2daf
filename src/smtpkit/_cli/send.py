"""``smtpkit send URL ...``: send one message, an .eml file, or a JSON-lines file."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable

from .._bulk import BulkProgress
from .._exceptions import RecipientsRefusedError
from .._mailer import BulkItem, Mailer
from .._transports.base import SendResult
from ._compose import (
    add_message_arguments,
    build_message,
    envelope_of,
    has_content_options,
    read_eml,
    read_jsonl,
)
from ._exit import ExitCode, UsageError, advice_for, exit_code_for
from ._output import Output
from ._server import Server, add_server_arguments

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  smtpkit send smtp://me%40example.com@mail.example.com --prompt-password \\
      --from me@example.com --to you@example.com --subject "Test" --text body.txt
  echo "It works" | smtpkit send "$SMTP_URL" --from me@example.com \\
      --to you@example.com --subject Test --text -
  smtpkit send "$SMTP_URL" --eml saved.eml --from me@example.com --to you@example.com
  smtpkit send "$SMTP_URL" --jsonl campaign.jsonl --from news@example.com

exit codes: 0 every recipient accepted; 1 a message or recipient was refused
(or another SMTP failure); 2 bad URL, options or files (nothing sent); 3 cannot
connect or TLS failed; 4 the server refused the credentials.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``send`` command."""
    parser = subparsers.add_parser(
        "send",
        help="send a message, an .eml file or a JSON-lines file of messages",
        description=textwrap.fill(
            "Send a message built from the options, an existing .eml file with the "
            "envelope from --from/--to/--cc/--bcc, or many messages from a JSON-lines "
            "file (one smtpkit Message object per line).  Prints each recipient's "
            "result; a progress line goes to stderr when it is a terminal.",
            width=78,
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(parser)
    add_message_arguments(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--eml", metavar="FILE", help="send this existing message file")
    source.add_argument(
        "--jsonl",
        metavar="FILE",
        help='one message per line: {"to": [...], "subject": ..., "text": ...}; '
        "--from fills a missing sender",
    )


def collect(args: argparse.Namespace) -> list[BulkItem]:
    """What the options ask to send, checked before anything is sent.

    Raises:
        UsageError: The options conflict, or a file cannot be read.
        pydantic.ValidationError: An address or another message field is invalid.
    """
    if (args.eml or args.jsonl) and has_content_options(args):
        msg = (
            "--eml and --jsonl take no --subject, --text, --html, --attach or --inline"
        )
        raise UsageError(msg)
    if args.eml:
        return [(read_eml(args.eml), envelope_of(args))]
    if args.jsonl:
        if args.to or args.cc or args.bcc:
            msg = "--jsonl takes the recipients from each line, not --to/--cc/--bcc"
            raise UsageError(msg)
        return list(read_jsonl(args.jsonl, sender=args.sender))
    return [build_message(args)]


def run(args: argparse.Namespace, output: Output, server: Server) -> ExitCode:
    """Send and print every recipient's result; return the exit code."""
    items = collect(args)
    progress = _progress(output) if output.is_tty and len(items) > 1 else None
    failures: list[ExitCode] = []
    with Mailer(server.config) as mailer:
        for number, result in enumerate(
            mailer.send_iter(items, on_progress=progress), start=1
        ):
            if progress is not None:
                output.status("")
            failures += _report(output, number, len(items), result)
    if progress is not None:
        output.stderr.write("\n")
    output.err(f"url: {server.shown_url}")
    if not failures:
        return ExitCode.OK
    # The most specific failure decides: a login or connection problem is what
    # the user must fix first; a refused recipient is 1.
    code = max(failures, key=lambda c: (c is not ExitCode.FAILED, c))
    advice = advice_for(code)
    if advice is not None:
        output.err(f"what to do: {advice}")
    return code


def _progress(output: Output) -> Callable[[BulkProgress], None]:
    def show(progress: BulkProgress) -> None:
        total = "?" if progress.total is None else progress.total
        output.status(f"sent {progress.done}/{total}, failed {progress.failed}")

    return show


def _report(
    output: Output, number: int, total: int, result: SendResult
) -> list[ExitCode]:
    """Print one message's outcome; return the exit codes of what failed in it."""
    label = f"message {number}/{total}" if total > 1 else "message"
    if result.message_id:
        label = f"{label} {result.message_id}"
    error = result.error
    if isinstance(error, RecipientsRefusedError):
        output.out(f"{label}: not sent, every recipient refused")
        for address, reply in error.refused.items():
            output.out(f"  refused  {address}: {reply}")
        return [ExitCode.FAILED]
    if error is not None and not result.recipients:
        output.out(f"{label}: failed: {error}")
        return [exit_code_for(error)]
    queued = "" if result.reply is None else f": {result.reply}"
    output.out(f"{label}: sent{queued}")
    failed: list[ExitCode] = []
    for recipient in result.recipients.values():
        word = "accepted" if recipient.accepted else "refused "
        hint = f" (hint: {recipient.hint})" if recipient.hint else ""
        output.out(f"  {word} {recipient.address}: {recipient.reply}{hint}")
        if not recipient.accepted:
            failed.append(ExitCode.FAILED)
    if error is not None:
        output.out(f"  then failed: {error}")
        failed.append(exit_code_for(error))
    return failed
