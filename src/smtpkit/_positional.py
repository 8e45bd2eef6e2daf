"""Positional first arguments for pydantic models, without losing their errors.

pydantic's ``BaseModel.__init__`` takes keywords only.  ``RateLimit(10)`` and
``Envelope(sender, recipients)`` read better, so those models map their leading
positional arguments onto field names here and pass everything on as keywords: a
missing or unknown field is still reported by validation (``ValidationError``), and
only a call that could never bind (too many positionals, a field given twice) is a
``TypeError``, as it would be for any Python function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bind_positional"]


def bind_positional(
    model: str, names: Sequence[str], args: Sequence[Any], data: Mapping[str, Any]
) -> dict[str, Any]:
    """Return *data* with *args* added under the first ``len(args)`` of *names*.

    Raises:
        TypeError: More positional arguments than *names*, or a field given both
            positionally and by keyword.
    """
    if len(args) > len(names):
        given = len(args)
        msg = f"{model}() takes at most {len(names)} positional argument(s) ({given} given)"
        raise TypeError(msg)
    fields = dict(data)
    for name, value in zip(names, args, strict=False):
        if name in fields:
            msg = f"{model}() got multiple values for argument {name!r}"
            raise TypeError(msg)
        fields[name] = value
    return fields
