"""Pre-built stdlib messages (forwarding, resending, Django): envelope and bytes.

Both kinds of stdlib message are taken: ``EmailMessage`` (the modern policy) and
the legacy ``email.message.Message`` that ``email.message_from_bytes`` returns by
default and Django's ``EmailMessage.message()`` builds (``SafeMIMEText``, under
``compat32``).  Each is rendered with its own policy family, as smtplib's
``send_message`` does, after the same promises are checked as for a ``Message``:
no header value that would write a line of its own, no address the parser had to
repair, no line over 998 octets.  The envelope follows smtplib's ``send_message``
rule, ``Resent-`` blocks included.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from email import policy as email_policy
from email.errors import InvalidHeaderDefect
from email.message import EmailMessage
from email.message import Message as MIMEMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from typing import Final

from ._exceptions import InvalidMessageError
from ._header_block import as_unicode, check_body_start, check_header_blocks, cut_short
from ._message import Envelope
from ._mime import MAX_LINE, check_header_text, normalize_line_endings

__all__ = ["envelope_of", "raw_message_id", "render_email"]

_FIELD_NAME_RE: Final = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8

# A header block every line of which the stdlib parser reads as a field or its
# continuation (email.feedparser's headerRE), first line a field, no "From " line,
# and nothing its str.splitlines() would take for a line break (VT, FF, FS-RS).
_PLAIN_LINE: Final = rb"[^\r\n\x0b\x0c\x1c-\x1e]*\r\n"
_PLAIN_FIELD: Final = rb"[\x21-\x39\x3b-\x7e]+:" + _PLAIN_LINE
_PLAIN_HEADER_BLOCK_RE: Final = re.compile(
    rb"%s(?:%s|[ \t]%s)*" % (_PLAIN_FIELD, _PLAIN_FIELD, _PLAIN_LINE)
)
_MESSAGE_ID_FIELD_RE: Final = re.compile(
    rb"^message-id:(%s(?:[ \t]%s)*)" % (_PLAIN_LINE, _PLAIN_LINE),
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_PARSER: Final = BytesHeaderParser()


@functools.cache
def _modern_keeps_8bit_headers() -> bool:
    """Whether the stdlib writes parsed 8-bit header text as it is under the modern
    ``SMTP`` policy (3.10 to 3.12), rather than as ``unknown-8bit`` encoded words
    (3.13): only then can an attached message's 8-bit headers go with 8BITMIME.
    Probed rather than read from the version, so a backport changes nothing."""
    probe = BytesParser(policy=email_policy.default).parsebytes(
        b"Subject: \xc3\xa9\r\n\r\n"
    )
    return b"\xc3\xa9" in probe.as_bytes(policy=email_policy.SMTP)


# Folding white space in a parsed header: a line break, then WSP, then text.
_VALID_FOLD_RE: Final = re.compile(r"\r?\n(?=[ \t]+[^ \t\r\n])")
# A continuation line of white space alone: RFC 5322 §3.2.2 forbids generating
# it (only obs-FWS, §4.2, reads it), and a reader may take it for the empty line
# that ends the header block.
_BLANK_FOLD_RE: Final = re.compile(r"\r?\n[ \t]+(?=\r?\n|\Z)")
_ADDRESS_FIELDS: Final = (
    "From", "Sender", "Reply-To", "To", "Cc",
    "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
)  # fmt: skip
_UTF8_POLICY: Final = email_policy.SMTPUTF8
_DEFAULT_POLICY: Final = email_policy.default
# What smtplib's send_message writes a legacy message with, less its mbox-era
# mangling of body lines starting with "From " (the modern path does not mangle).
_COMPAT32_WIRE: Final = email_policy.compat32.clone(linesep="\r\n")
_PARSER: Final = BytesParser(_class=EmailMessage, policy=_DEFAULT_POLICY)
# Unicode in a legacy message's address field is written raw or as encoded words
# that swallow the address (a compat32 Header, a non-ASCII name or domain).
_ADDRESS_HINT: Final = (
    "Write non-ASCII display names with email.utils.formataddr((name, address)), "
    "which encodes the name alone, and domains as A-labels (xn--...); or build "
    "the message as an EmailMessage (policy=email.policy.default) or an "
    "smtpkit.Message, which encode names and domains themselves and can carry a "
    "non-ASCII local part (SMTPUTF8)"
)


def raw_message_id(data: bytes) -> str | None:
    """The Message-ID of CRLF-normalised raw message bytes, as the stdlib reads it.

    Only the header block is looked at: parsing a whole 100 KB message to find
    one header cost more than sending it.  A plain ASCII block is read here;
    anything the stdlib parser might read differently (8-bit text, a line that
    would end its header block early, an odd line break) goes to that parser,
    given the header block alone, so the answer is always the stdlib's
    (``BytesHeaderParser``, ``compat32``: the first field, folding kept).
    """
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[: end + 2]
    if block.isascii() and _PLAIN_HEADER_BLOCK_RE.fullmatch(block):
        match = _MESSAGE_ID_FIELD_RE.search(block)
        if match is None:
            return None
        return match[1].decode("ascii").lstrip(" \t").rstrip("\r\n")
    head = data if end < 0 else data[: end + 4]
    value = _HEADER_PARSER.parsebytes(head, headersonly=True).get("Message-ID")
    return None if value is None else str(value)


def envelope_of(msg: MIMEMessage) -> Envelope:
    """Derive an envelope from a pre-built message's headers, as smtplib does.

    MIME senders come from ``Sender`` or else ``From``; recipients from ``To``,
    ``Cc`` and ``Bcc``.  A resent message (one ``Resent-Date``, RFC 5322 §3.6.6)
    goes to its ``Resent-`` block instead: ``Resent-Sender`` or ``Resent-From``,
    and ``Resent-To``, ``Resent-Cc`` and ``Resent-Bcc``, the rule of smtplib's
    ``send_message``.  Like smtplib, more than one ``Resent-Date`` is refused:
    which block is the newest cannot be told reliably.

    Raises:
        InvalidMessageError: No sender or no recipient could be found, the
            message has more than one ``Resent-`` block, an address field holds
            a control character or line break, or a header block was cut short
            (see ``check_header_blocks``), or its body starts with a recipient
            field (``To: b@x.org``) the header block may have lost.
    """
    check_header_blocks(msg)
    check_body_start(msg, recipients=True)
    resent = msg.get_all("Resent-Date") or []
    if len(resent) > 1:
        msg_text = "pass an envelope: the message has more than one Resent- block"
        raise InvalidMessageError(msg_text)
    if not resent and any(name.lower().startswith("resent-") for name in msg):
        # Half a resend: sending it to the original recipients again would be wrong,
        # and the Resent- ones cannot be trusted without the block's Resent-Date.
        msg_text = "pass an envelope: the message has Resent- fields but no Resent-Date"
        raise InvalidMessageError(msg_text)
    prefix = "Resent-" if resent else ""
    senders = _field_addresses(msg, f"{prefix}Sender") or _field_addresses(
        msg, f"{prefix}From"
    )
    if len(senders) != 1:
        msg_text = (
            f"pass an envelope: the message needs exactly one {prefix}From "
            f"(or {prefix}Sender) address"
        )
        raise InvalidMessageError(msg_text)
    recipients = tuple(
        addr
        for name in ("To", "Cc", "Bcc")
        for addr in _field_addresses(msg, prefix + name)
    )
    if not recipients:
        msg_text = (
            f"pass an envelope: the message has no {prefix}To, {prefix}Cc or "
            f"{prefix}Bcc address"
        )
        raise InvalidMessageError(msg_text)
    return Envelope(sender=senders[0], recipients=recipients)


def _field_addresses(msg: MIMEMessage, name: str) -> list[str]:
    """The addr-specs of every *name* header, read as written, never repaired.

    Each value is parsed from its raw text with the modern header parser, whatever
    the message's policy.  A value the parser had to repair (it notes a defect:
    ``ada@example.com extra``, ``alice@x.org)<bob@x.org>``) is refused, and so is
    an encoded word inside an addr-spec (``bob@=?utf-8?q?evil.example?=``), which
    readers decode to an address that differs from the one on the wire.
    """
    addresses = []
    for key, value in msg.raw_items():
        if key.lower() != name.lower():
            continue
        text = str(value)
        _check_field(name, text)
        unfolded = _VALID_FOLD_RE.sub("", as_unicode(text))
        # One address at a time: the modern parser is quadratic in a long list.
        for piece in _split_address_list(unfolded):
            addresses += _piece_addresses(name, piece)
    return addresses


def _piece_addresses(name: str, piece: str) -> list[str]:
    """The addr-specs of one address (or group) of an address list."""
    header = _DEFAULT_POLICY.header_factory(name, piece)
    defects = [d for d in header.defects if isinstance(d, InvalidHeaderDefect)]
    if defects or any("=?" in addr for _, addr in getaddresses([piece])):
        problem = defects[0] if defects else "an encoded word in an address"
        msg_text = (
            f"pass an envelope: the {name} header cannot be read as addresses "
            f"without rewriting it ({problem})"
        )
        raise InvalidMessageError(msg_text)
    return [
        address.addr_spec
        for address in getattr(header, "addresses", ())
        if address.addr_spec not in ("", "<>")
    ]


def _split_address_list(text: str) -> list[str]:
    """Split an address list at its top-level commas (RFC 5322 §3.4).

    Commas inside quoted strings, comments, angle brackets and groups
    (``team: a@x.org, b@x.org;``) do not split.  Anything malformed stays in one
    piece, for the parser to find its defect there.
    """
    pieces = []
    start = 0
    quoted = angle = group = False
    comment = 0
    escaped = False
    for index, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or comment):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif comment:
            comment += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            comment = 1
        elif ch in "<>":
            angle = ch == "<"
        elif ch == ":" and not angle:
            group = True
        elif ch == ";" and not angle:
            group = False
        elif ch == "," and not angle and not group:
            pieces.append(text[start:index])
            start = index + 1
    pieces.append(text[start:])
    return [piece for piece in pieces if piece.strip()]


def _check_field(name: str, text: str) -> bool:
    """Refuse a header value that would write a line of its own when re-folded.

    Values parsed from bytes are stored raw, and both policies re-fold them with
    ``str.splitlines``: a VT, FF or U+2028 there becomes a CRLF.  Folding already
    in a parsed value (a line break, then white space and text) is left alone.

    Returns:
        Whether the value holds non-ASCII text that is valid UTF-8 (bytes of an
        unknown 8-bit charset do not count).
    """
    utf8 = False
    if not text.isascii():  # raw bytes from a parser are surrogate escapes
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            msg = f"header {name} is not valid Unicode: {text!r}"
            raise InvalidMessageError(msg) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
        else:
            utf8 = True
    if _BLANK_FOLD_RE.search(text):
        msg = (
            f"a folded line of header {name} holds only white space, which a reader "
            "may take for the end of the header block: remove that line from the "
            f"source and parse the message again, or set {name} again on one line "
            f"(msg.replace_header({name!r}, value)): {text!r}"
        )
        raise InvalidMessageError(msg)
    check_header_text(f"header {name}", _VALID_FOLD_RE.sub("", text))
    return utf8


def _parts(
    msg: MIMEMessage, *, attached: bool = False
) -> Iterator[tuple[MIMEMessage, bool]]:
    """Each part with whether it lies inside an attached message (message/rfc822)."""
    yield msg, attached
    payload = msg.get_payload()
    if msg.is_multipart() and isinstance(payload, list):
        inner = attached or msg.get_content_maintype() == "message"
        for child in payload:
            if isinstance(child, MIMEMessage):
                yield from _parts(child, attached=inner)


def _check_headers(msg: MIMEMessage, *, modern: bool) -> bool:
    """Check every field of every part, attachments' parameters included.

    Call it on what is transmitted (without Bcc): a field left out cannot need
    SMTPUTF8.

    Returns:
        Whether a value is raw UTF-8 text, which only SMTPUTF8 carries as it is.
        Under the modern policy that is any ``str`` value (stored under compat32,
        or parsed): the ``SMTP`` policy would encode it when the line is long and
        fail when it is short; its header objects encode themselves.  A legacy
        message writes raw only what was parsed from bytes (surrogate escapes):
        its generator encodes other text as RFC 2047 words.  The header fields of
        an attached message are body octets of this one: parsed UTF-8 there is
        written as it is and travels with 8BITMIME, like its 8-bit body
        (RFC 6532 §3.5 names message/global for that content, not the envelope),
        except where the modern policy would re-encode it (Python 3.13): then the
        utf8 policy, and so SMTPUTF8, keeps the attached message's bytes.
    """
    utf8 = False
    for part, attached in _parts(msg):
        for name, value in part.raw_items():
            if not _FIELD_NAME_RE.fullmatch(name):
                msg_text = f"header name must be printable ASCII without ':': {name!r}"
                raise InvalidMessageError(msg_text)
            raw_text = _check_field(name, str(value))
            if raw_text and type(value) is str:
                parsed_bytes = as_unicode(value) != value
                utf8 = utf8 or (
                    modern and (not parsed_bytes or not _modern_keeps_8bit_headers())
                    if attached
                    else modern or parsed_bytes
                )
    return utf8


def _check_lines(data: bytes) -> None:
    """Refuse a line over 998 octets (RFC 5322 §2.1.1); a bare CR ends a line too."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    longest = max(lines, key=len)
    if len(longest) > MAX_LINE:
        msg = (
            f"the message has a line of {len(longest)} octets, over the "
            f"{MAX_LINE} RFC 5322 §2.1.1 allows: {longest[:60]!r}..."
        )
        raise InvalidMessageError(msg)


def render_email(msg: MIMEMessage, envelope: Envelope) -> tuple[Envelope, bytes]:
    """Check and render a pre-built message; return its envelope and bytes.

    An ``EmailMessage`` is written with the ``SMTP`` (or ``SMTPUTF8``) policy, a
    legacy ``email.message.Message`` with ``compat32`` and CRLF, as smtplib's
    ``send_message`` does (body lines starting with "From " are not mangled).
    The Bcc and Resent-Bcc headers are left out; *msg* is not changed.  What can
    be written only as UTF-8 (RFC 6532 §3.2) makes the envelope ask for SMTPUTF8:
    addresses in the headers that are not ASCII (``用户@例子.cn``; the ``SMTP``
    policy would put encoded words inside them), and raw UTF-8 text (set under
    compat32, or parsed) in a field that is transmitted: not in Bcc, and not in
    an attached message, whose bytes 8BITMIME carries (see ``_check_headers``).
    The transport then raises ``NotSupportedError`` when the server does not
    offer SMTPUTF8.

    Raises:
        InvalidMessageError: A header block was cut short by a line that is not a
            field (see ``check_header_blocks``), a header name or value would
            break the header block (see ``_check_field``), text cannot be encoded
            (not valid Unicode, or a compat32 body without a charset), or a line
            of the result exceeds 998 octets.
    """
    # By class, not policy: an EmailMessage under compat32 has always gone out
    # with the modern policy, like every EmailMessage.
    modern = isinstance(msg, EmailMessage)
    check_header_blocks(msg)
    if "Bcc" in msg or "Resent-Bcc" in msg:
        # Deleting a header rebinds the copy's header list; the caller's is untouched.
        msg = copy.copy(msg)
        del msg["Bcc"]
        del msg["Resent-Bcc"]
    raw_utf8 = _check_headers(msg, modern=modern)
    addresses = {name: _field_addresses(msg, name) for name in _ADDRESS_FIELDS}
    if not envelope.needs_smtputf8 and (
        raw_utf8 or not all(a.isascii() for found in addresses.values() for a in found)
    ):
        envelope = envelope.model_copy(update={"smtputf8": True})
    policy = _UTF8_POLICY if envelope.needs_smtputf8 else email_policy.SMTP
    try:
        data = _flatten(msg, policy if modern else _COMPAT32_WIRE)
    except UnicodeEncodeError as exc:  # e.g. a compat32 str body without a charset
        msg_text = f"the message holds text its policy cannot encode: {exc}"
        raise InvalidMessageError(msg_text) from exc
    except Exception as exc:  # the stdlib generator on user content (HeaderWriteError)
        msg_text = f"the message cannot be rendered: {exc}"
        raise InvalidMessageError(msg_text) from exc
    _check_lines(data)
    try:
        _check_rendered(msg, data, addresses)
    except InvalidMessageError as exc:
        if not _renders_itself(msg):
            raise
        msg_text = (
            f"{type(msg).__name__}.as_bytes() wrote other header fields or "
            "addresses than the message holds (a signature it adds?); smtpkit "
            "sends only what it can check against the message: render and sign "
            "it yourself and send the bytes, mailer.send(data, envelope=...)"
        )
        raise InvalidMessageError(msg_text) from exc
    return envelope, normalize_line_endings(data)  # a body may end without one


def _flatten(msg: MIMEMessage, policy: email_policy.Policy) -> bytes:
    """Write *msg* as ``msg.as_bytes(policy=...)`` does, or with its class's own rendering.

    A class whose ``as_bytes`` takes no ``policy`` (Django's MIME classes before
    Django 6, which choose only the line ending; or one that adds a signature)
    renders itself: its ``as_bytes()`` is called, and the caller checks and
    normalises the bytes like any others (see ``_renders_itself``).
    """
    if _takes_policy(type(msg).as_bytes):
        return msg.as_bytes(policy=policy)
    return msg.as_bytes()


def _renders_itself(msg: MIMEMessage) -> bool:
    """Whether *msg* is written by its class's own ``as_bytes()``, policy unused."""
    return not _takes_policy(type(msg).as_bytes)


@functools.cache
def _takes_policy(as_bytes: Callable[..., bytes]) -> bool:
    """Whether a class's ``as_bytes`` accepts ``policy=`` (the stdlib's does)."""
    try:
        parameters = inspect.signature(as_bytes).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - not introspectable
        return True
    return any(
        p.name == "policy" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


def _check_rendered(
    msg: MIMEMessage, data: bytes, addresses: dict[str, list[str]]
) -> None:
    """Refuse bytes whose header fields or addresses differ from the message's.

    Re-folding decodes RFC 2047 words and RFC 2231 parameters and writes the result:
    an encoded CR LF in a long Subject or file name becomes a header line of its
    own, and a decoded display name can read as more addresses.  Whatever the
    mechanism, the bytes are parsed back and must hold the same fields, part by
    part, and the same *addresses* (read from the message) in every address field.
    """
    rendered = _PARSER.parsebytes(data)
    if not _same_fields(msg, rendered):
        msg_text = (
            "the message cannot be sent as it is: rendering it would change its "
            "header fields (a value decodes to a line break)"
        )
        raise InvalidMessageError(msg_text)
    for name, before in addresses.items():
        try:
            after = _field_addresses(rendered, name)
        except InvalidMessageError:
            after = None
        if before != after:
            msg_text = (
                f"the message cannot be sent as it is: rendering it would change "
                f"the addresses of its {name} header. {_ADDRESS_HINT}"
            )
            raise InvalidMessageError(msg_text)


def _same_fields(original: MIMEMessage, rendered: MIMEMessage) -> bool:
    """Whether both have the same field names, part by part, as far as *original* goes."""
    if [k.lower() for k in original] != [k.lower() for k in rendered]:
        return False
    if cut_short(rendered):
        return False  # a line that is no header ended the header block early
    if not original.is_multipart():
        return True  # a payload kept as text may parse into parts: not ours to check
    children = original.get_payload()
    rendered_children = rendered.get_payload()
    return (
        isinstance(children, list)
        and isinstance(rendered_children, list)
        and len(children) == len(rendered_children)
        and all(
            _same_fields(child, again)
            for child, again in zip(children, rendered_children, strict=True)
        )
    )
