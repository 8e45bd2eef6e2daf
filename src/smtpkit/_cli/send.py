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
    # The result out of the stream and not yet printed: a Ctrl-C landing while
    # it is printed must not lose it (it is in neither the loop nor leftover).
    taken: SendResult | None = None
    with Mailer(server.config) as mailer:
        stream = mailer.send_iter(items, on_progress=progress)
        try:
            with stream:
                for result in stream:
                    taken = result
                    if progress is not None:
                        output.status("")
                    report.add(result)
                    taken = None
        except KeyboardInterrupt:
            interrupted = True
        if taken is not None:
            report.add(taken)
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
    """Prints each message's outcome and remembers what the exit code needs.

    A message's lines go out in one write, and it counts (in ``count`` and the
    exit code) only once written: ``add`` may be called again for a result
    whose printing a Ctrl-C cut short, and prints it then.
    """

    def __init__(self, output: Output, total: int) -> None:
        self._output = output
        self._total = total
        self.count = 0
        self.failures: list[ExitCode] = []
        self.reached_server = False  # a transaction got as far as the recipients
        self._last: SendResult | None = None  # the result printed last

    def add(self, result: SendResult) -> None:
        """Print one message's outcome, unless it was the one printed last."""
        if result is self._last:
            return
        outcome = _Outcome()
        label = (
            f"message {self.count + 1}/{self._total}" if self._total > 1 else "message"
        )
        if result.message_id:
            label = f"{label} {result.message_id}"
        _describe(result, label, outcome)
        self._output.out("\n".join(outcome.lines))
        # Nothing below calls Python code, where CPython delivers a Ctrl-C; one
        # landing as the write returns prints this result twice, never loses it.
        self._last = result
        self.count += 1
        self.failures += outcome.failures
        self.reached_server = self.reached_server or outcome.reached_server


class _Outcome:
    """What one message's result prints and adds to the exit code."""

    __slots__ = ("failures", "lines", "reached_server")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures: list[ExitCode] = []
        self.reached_server = False


def _describe(result: SendResult, label: str, outcome: _Outcome) -> None:
    """Fill *outcome* with the lines and exit codes of *result*."""
    lines, failures = outcome.lines, outcome.failures
    error = result.error
    if isinstance(error, RecipientsRefusedError):
        outcome.reached_server = True
        lines.append(f"{label}: not sent, every recipient refused")
        lines += [f"  refused  {a}: {reply}" for a, reply in error.refused.items()]
        failures.append(ExitCode.FAILED)
        return
    if isinstance(error, NotSentError):
        lines.append(f"{label}: not sent (interrupted before its turn)")
        failures.append(ExitCode.FAILED)
        return
    if isinstance(error, TransportError) and error.delivery_unknown:
        outcome.reached_server = True
        lines.append(
            f"{label}: delivery unknown: the server may have accepted it; "
            f"check before resending ({error})"
        )
        failures.append(ExitCode.FAILED)
        return
    if error is not None and not result.recipients:
        lines.append(f"{label}: failed: {error}")
        failures.append(exit_code_for(error))
        return
    queued = "" if result.reply is None else f": {result.reply}"
    lines.append(f"{label}: sent{queued}")
    for recipient in result.recipients.values():
        word = "accepted" if recipient.accepted else "refused "
        hint = f" (hint: {recipient.hint})" if recipient.hint else ""
        lines.append(f"  {word} {recipient.address}: {recipient.reply}{hint}")
        outcome.reached_server = True
        if not recipient.accepted:
            failures.append(ExitCode.FAILED)
    if error is not None:
        lines.append(f"  then failed: {error}")
        failures.append(exit_code_for(error))
