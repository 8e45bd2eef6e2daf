"""Keep pydantic's strict JSON validation working through smtpkit's before-validators.

A field validator with ``mode="before"`` (``to="a@x.org"`` becoming a one-item
tuple, ``no_retry_enhanced="4.7.1"`` one code) receives a JSON array as a Python
``list``, and strict validation of a ``tuple`` or ``frozenset`` field then refuses the
list pydantic made itself: ``Message.model_validate_json('{"to": ["b@x.org"], ...}',
strict=True)`` failed with "Input should be a valid array".  Those validators give a
JSON array the collection type the field has; Python input is left to pydantic, so
strict Python validation still refuses a ``list`` for a ``tuple``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo

__all__ = ["json_array_as_frozenset", "json_array_as_tuple"]


def json_array_as_tuple(value: Any, info: ValidationInfo) -> Any:
    """*value* as a tuple when it is a JSON array, else unchanged."""
    return tuple(value) if info.mode == "json" and isinstance(value, list) else value


def json_array_as_frozenset(value: Any, info: ValidationInfo) -> Any:
    """*value* as a frozenset when it is a JSON array of strings and integers.

    Anything else is left for validation to refuse: a set would merge ``1`` with
    ``1.0`` and ``true``, which strict validation tells apart, and cannot hold arrays.
    """
    if (
        info.mode == "json"
        and isinstance(value, list)
        and all(type(item) in (int, str) for item in value)
    ):
        return frozenset(value)
    return value
