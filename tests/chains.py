"""Walk everything an exception carries, for tests that check no secret shows."""

from __future__ import annotations

from collections.abc import Iterator


def linked(error: BaseException) -> Iterator[BaseException]:
    """*error*, its causes and contexts, and an exception group's members, once each."""
    seen: set[int] = set()
    todo: list[object] = [error]
    while todo:
        link = todo.pop()
        if not isinstance(link, BaseException) or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        todo += [link.__cause__, link.__context__, *getattr(link, "exceptions", ())]
