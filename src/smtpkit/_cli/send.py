"""``smtpkit send URL ...``: send one message, an .eml file, or a JSON-lines file."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable

from .._bulk import BulkProgress, NotSentError
from .._exceptions import RecipientsRefusedError, TransportError
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
from ._exit import ExitCode, UsageError, advice_for, exit_code_for, input_errors
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

exit codes: 0 every recipient accepted; 1 a message or recipient was refused,
its delivery is unknown (the connection dropped after the data was sent: check
before resending), or another SMTP failure; 2 bad URL, options or files (nothing
sent); 3 cannot connect or TLS failed; 4 the server refused the credentials;
130 interrupted (Ctrl-C): every message's result is printed first.
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
    """Send and print every recipient's result; return the exit code.

    Ctrl-C stops reading and waits for the sends already on the wire (a second
    one stops waiting), then prints every message's result: the ones delivered
    meanwhile, those whose delivery is unknown, and those never sent.
    """
    with input_errors("the message files"):
        items = collect(args)
    progress = _progress(output) if output.is_tty and len(items) > 1 else None
    report = _Report(output, len(items))
    interrupted = False
    with Mailer(server.config) as mailer:
        stream = mailer.send_iter(items, on_progress=progress)
        try:
            with stream:
                for result in stream:
                    if progress is not None:
                        output.status("")
                    report.add(result)
        except KeyboardInterrupt:
            interrupted = True
        for result in stream.leftover:  # empty unless the run was interrupted
            report.add(result)
    if progress is not None:
        output.stderr.write("\n")
    output.err(f"url: {server.shown_url}")
    if interrupted:
        output.err(
            f"interrupted: {report.count} of {len(items)} message(s) reported above; "
            "those 'not sent' never reached the server and can be sent again"
        )
        return ExitCode.INTERRUPTED
    if not report.failures:
        return ExitCode.OK
    # The most specific failure decides: a login or connection problem is what
    # the user must fix first; a refused recipient is 1.
    code = max(report.failures, key=lambda c: (c is not ExitCode.FAILED, c))
    # "Check the host" or "nothing was sent" would be wrong once a message
    # reached the server.
    advice = None if report.reached_server else advice_for(code)
    if advice is not None:
        output.err(f"what to do: {advice}")
    return code


def _progress(output: Output) -> Callable[[BulkProgress], None]:
    def show(progress: BulkProgress) -> None:
        total = "?" if progress.total is None else progress.total
        output.status(f"sent {progress.done}/{total}, failed {progress.failed}")

    return show


class _Report:
    """Prints each message's outcome and remembers what the exit code needs."""

    def __init__(self, output: Output, total: int) -> None:
        self._output = output
        self._total = total
        self.count = 0
        self.failures: list[ExitCode] = []
        self.reached_server = False  # a transaction got as far as the recipients

    def add(self, result: SendResult) -> None:
        """Print one message's outcome."""
        self.count += 1
        output = self._output
        label = f"message {self.count}/{self._total}" if self._total > 1 else "message"
        if result.message_id:
            label = f"{label} {result.message_id}"
        error = result.error
        if isinstance(error, RecipientsRefusedError):
            self.reached_server = True
            output.out(f"{label}: not sent, every recipient refused")
            for address, reply in error.refused.items():
                output.out(f"  refused  {address}: {reply}")
            self.failures.append(ExitCode.FAILED)
            return
        if isinstance(error, NotSentError):
            output.out(f"{label}: not sent (interrupted before its turn)")
            self.failures.append(ExitCode.FAILED)
            return
        if isinstance(error, TransportError) and error.delivery_unknown:
            self.reached_server = True
            output.out(
                f"{label}: delivery unknown: the server may have accepted it; "
                f"check before resending ({error})"
            )
            self.failures.append(ExitCode.FAILED)
            return
        if error is not None and not result.recipients:
            output.out(f"{label}: failed: {error}")
            self.failures.append(exit_code_for(error))
            return
        queued = "" if result.reply is None else f": {result.reply}"
        output.out(f"{label}: sent{queued}")
        for recipient in result.recipients.values():
            word = "accepted" if recipient.accepted else "refused "
            hint = f" (hint: {recipient.hint})" if recipient.hint else ""
            output.out(f"  {word} {recipient.address}: {recipient.reply}{hint}")
            self.reached_server = True
            if not recipient.accepted:
                self.failures.append(ExitCode.FAILED)
        if error is not None:
            output.out(f"  then failed: {error}")
            self.failures.append(exit_code_for(error))
