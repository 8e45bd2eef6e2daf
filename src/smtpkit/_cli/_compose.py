"""The message options shared by ``send`` and ``render``, and what they build.

``--from/--to/--cc/--bcc/--subject/--text/--html/--attach/--inline`` build one
``Message``; ``--eml FILE`` takes an existing message with the envelope from
``--from`` and the recipients; ``--jsonl FILE`` reads one ``Message`` per line.
"""

from __future__ import annotations

import argparse
import email
import json
import re
import sys
from collections.abc import Sequence
from email.message import Message as MIMEMessage
from pathlib import Path
from typing import BinaryIO, Final

from pydantic import ValidationError

from .._message import Attachment, Envelope, Message
from .._render import render
from ._exit import UsageError

__all__ = ["add_message_arguments", "build_message", "read_eml", "read_jsonl"]

_STDIN = "-"
# What a Content-ID made from a file name may not hold as is (see content_id_for).
_CID_UNSAFE_RE: Final = re.compile(r'[^!-~]|[<>%"]')


def add_message_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that describe a message to a command's parser."""
    group = parser.add_argument_group("message")
    group.add_argument(
        "--from", dest="sender", metavar="ADDRESS", help="the From address"
    )
    for flag, what in (
        ("--to", "To"),
        ("--cc", "Cc"),
        ("--bcc", "Bcc (never in the headers)"),
    ):
        group.add_argument(
            flag,
            action="append",
            default=[],
            metavar="ADDRESS",
            help=f"a {what} recipient; repeat for more",
        )
    group.add_argument("--subject", default=None, help="the subject")
    group.add_argument(
        "--text",
        metavar="FILE",
        help="the plain-text body from FILE (UTF-8), or - for stdin",
    )
    group.add_argument("--html", metavar="FILE", help="the HTML body from FILE (UTF-8)")
    group.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="attach FILE; repeat",
    )
    group.add_argument(
        "--inline",
        action="append",
        default=[],
        metavar="FILE",
        help=(
            "an inline image, referenced from the HTML as cid:NAME: the file's "
            'name with each space, non-ASCII character and <>%%" made _ '
            "(my logo.png: cid:my_logo.png)"
        ),
    )


def _read_bytes(path: str, stdin: BinaryIO | None = None) -> bytes:
    if path == _STDIN:
        return (stdin or sys.stdin.buffer).read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise UsageError(msg) from None


def _read_text(path: str, stdin: BinaryIO | None = None) -> str:
    data = _read_bytes(path, stdin)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    msg = f"{'stdin' if path == _STDIN else path} is not UTF-8 text"
    raise UsageError(msg)


def content_id_for(name: str) -> str:
    """The Content-ID ``--inline`` gives a file: its name, made a valid one.

    A Content-ID is printable ASCII without spaces or ``<>``; every other
    character (and ``%``, which a ``cid:`` URL decodes, RFC 2392) becomes
    ``_``, so ``my logo.png`` is ``cid:my_logo.png`` in the HTML, the same
    string whether a mail client decodes the URL or not.
    """
    return _CID_UNSAFE_RE.sub("_", name)


def _attachment(path: str, *, inline: bool) -> Attachment:
    name = Path(path).name
    content = _read_bytes(path)
    return Attachment(
        name, content, content_id=content_id_for(name) if inline else None
    )


def has_content_options(args: argparse.Namespace) -> bool:
    """True when any option that builds a message body or subject was given."""
    return any(
        (args.subject is not None, args.text, args.html, args.attach, args.inline)
    )


def build_message(
    args: argparse.Namespace, *, stdin: BinaryIO | None = None
) -> Message:
    """Build the ``Message`` the message options describe.

    Raises:
        UsageError: ``--from`` is missing, or a file cannot be read.
        pydantic.ValidationError: An address, the subject or a file name is invalid.
    """
    if not args.sender:
        msg = "--from ADDRESS is required"
        raise UsageError(msg)
    text = None if args.text is None else _read_text(args.text, stdin)
    html = None if args.html is None else _read_text(args.html, stdin)
    if text is None and html is None and not args.attach:
        text = ""  # a test message may be empty; it still needs a body part
    inline = [_attachment(path, inline=True) for path in args.inline]
    named: dict[str | None, str] = {}
    for path, part in zip(args.inline, inline, strict=True):
        if part.content_id in named:
            msg = (
                f"--inline {named[part.content_id]} and {path} would both be "
                f"cid:{part.content_id}; rename one"
            )
            raise UsageError(msg)
        named[part.content_id] = path
    attachments = [*(_attachment(path, inline=False) for path in args.attach), *inline]
    return Message(
        sender=args.sender,
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        subject=args.subject or "",
        text=text,
        html=html,
        attachments=attachments,
    )


def envelope_of(args: argparse.Namespace) -> Envelope:
    """The envelope given by ``--from`` and the recipients, for ``--eml``.

    Raises:
        UsageError: ``--from`` or every recipient is missing.
    """
    recipients: Sequence[str] = [*args.to, *args.cc, *args.bcc]
    if not args.sender or not recipients:
        msg = (
            "--eml needs the envelope: --from ADDRESS and at least one --to/--cc/--bcc"
        )
        raise UsageError(msg)
    return Envelope(sender=args.sender, recipients=tuple(recipients))


def read_eml(path: str) -> MIMEMessage:
    """Parse an existing message file as smtplib would send it (Bcc left out later)."""
    return email.message_from_bytes(_read_bytes(path))


def read_jsonl(path: str, *, sender: str | None) -> list[Message]:
    """Read one ``Message`` per line (JSON objects); ``sender`` fills a missing one.

    Every line is checked, and rendered, before anything is sent, so a typo
    or a header that cannot be written on line 900 does not stop a run half way.

    Raises:
        UsageError: The file cannot be read, or a line is not a valid message
            (the error names the line).
    """
    messages: list[Message] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "sender" not in data and sender:
                line = json.dumps({**data, "sender": sender})  # noqa: PLW2901
            message = Message.model_validate_json(line)
            render(message)  # what a send would do first: it must not fail later
            messages.append(message)
        except ValueError as exc:  # JSON syntax, pydantic's ValidationError,
            # InvalidMessageError (a ValueError too)
            problem = _first_problem(exc) if isinstance(exc, ValidationError) else exc
            error = f"{path}, line {number}: {problem}"
        except RecursionError:  # json nests deeper than Python recurses
            error = f"{path}, line {number}: nested too deeply"
        else:
            continue
        raise UsageError(error)
    if not messages:
        msg = f"{path} holds no messages"
        raise UsageError(msg)
    return messages


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]
