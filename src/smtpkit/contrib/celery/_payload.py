"""JSON-safe task payloads: a ``Message`` (attachments included) or raw bytes.

No pickle: a payload is a dict of JSON types, so any Celery serializer carries it
and a worker on another machine or Python version reads it.  Attachment contents
and raw messages travel as base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from smtpkit import Attachment, Envelope, InvalidMessageError, Message

__all__ = ["Item", "dump_message", "load_item", "load_message", "make_item"]

Item = dict[str, Any]
"""One message of a task: ``{"key", "message" | ("raw", "envelope")}``, JSON types only."""


def dump_message(message: Message) -> dict[str, Any]:
    """Return *message* as a dict of JSON types; ``load_message`` reverses it."""
    data = message.model_dump(
        mode="json", exclude={"attachments"}, exclude_defaults=True
    )
    if message.attachments:
        data["attachments"] = [
            {
                "filename": a.filename,
                "content": base64.b64encode(a.content).decode("ascii"),
                "content_type": a.content_type,
                "content_id": a.content_id,
            }
            for a in message.attachments
        ]
    return data


def load_message(data: Mapping[str, Any]) -> Message:
    """Rebuild a ``Message`` from ``dump_message`` output.

    Raises:
        InvalidMessageError: The data is not a valid message (a poisoned payload).
    """
    try:
        fields = dict(data)
        attachments = tuple(
            Attachment(
                filename=a["filename"],
                content=base64.b64decode(a["content"], validate=True),
                content_type=a.get("content_type") or "",
                content_id=a.get("content_id"),
            )
            for a in fields.pop("attachments", ())
        )
        message = Message.model_validate_json(json.dumps(fields))
    except (ValidationError, ValueError, TypeError, KeyError, binascii.Error) as exc:
        msg = f"the task payload is not a valid message: {_short(exc)}"
        raise InvalidMessageError(msg) from exc
    return message.model_copy(update={"attachments": attachments})


def make_item(
    key: str,
    message: Message | bytes,
    envelope: Envelope | None = None,
) -> Item:
    """Build the payload of one message under its idempotency *key*."""
    if isinstance(message, Message):
        item: Item = {"key": key, "message": dump_message(message)}
    else:
        item = {"key": key, "raw": base64.b64encode(message).decode("ascii")}
    if envelope is not None:
        item["envelope"] = {
            "sender": envelope.sender,
            "recipients": list(envelope.recipients),
            "smtputf8": envelope.smtputf8,
        }
    return item


def load_item(item: Mapping[str, Any]) -> tuple[Message | bytes, Envelope]:
    """Return the message and its envelope from a payload built by ``make_item``.

    Raises:
        InvalidMessageError: The payload is malformed (a poisoned message).
    """
    try:
        if "message" in item:
            message: Message | bytes = load_message(item["message"])
        else:
            message = base64.b64decode(item["raw"], validate=True)
        if "envelope" in item:
            envelope = Envelope.model_validate_json(json.dumps(item["envelope"]))
        else:
            envelope = _headers_envelope(message)
    except InvalidMessageError:
        raise
    except (ValidationError, ValueError, TypeError, KeyError, binascii.Error) as exc:
        msg = f"the task payload is not a valid message: {_short(exc)}"
        raise InvalidMessageError(msg) from exc
    return message, envelope


def _headers_envelope(message: Message | bytes) -> Envelope:
    if isinstance(message, Message):
        return message.to_envelope()
    msg = "a raw message needs an envelope"
    raise InvalidMessageError(msg)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
