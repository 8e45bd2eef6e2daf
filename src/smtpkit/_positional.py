"""Positional first arguments for pydantic models, without losing their errors.

pydantic's ``BaseModel.__init__`` takes keywords only.  ``RateLimit(10)`` and
``Envelope(sender, recipients)`` read better, so those models map their leading
positional arguments onto field names here and pass everything on as keywords: a
missing or unknown field is still reported by validation (``ValidationError``), and
only a call that could never bind (too many positionals, a field given twice) is a
``TypeError``, as it would be for any Python function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["bind_positional", "validates_like_base_init"]

_Init = TypeVar("_Init", bound=Callable[..., None])


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


def validates_like_base_init(init: _Init) -> _Init:
    """Mark a model ``__init__`` that only maps positionals as pydantic's own.

    A model class whose ``__init__`` is not ``BaseModel.__init__`` gets
    ``__pydantic_custom_init__``, and pydantic-core then builds every instance,
    those of ``model_validate`` and ``model_validate_json`` included, by calling that
    ``__init__`` with the raw input as keywords: ``strict=``, ``context=`` and
    ``from_attributes=`` are lost, and ``RateLimit.model_validate({"per_second":
    "10"}, strict=True)`` passes.  pydantic decides this from the init's
    ``__pydantic_base_init__`` attribute (``pydantic._internal._model_construction``,
    the same flag ``RootModel.__init__`` sets, since pydantic 2.0).  An init that
    only turns positional arguments into keywords adds nothing validation would
    miss, and validation never passes positionals, so pydantic may skip it there;
    calls such as ``RateLimit(10)`` still go through it.
    """
    init.__pydantic_base_init__ = True  # type: ignore[attr-defined]  # pydantic's flag
    return init
