# The little of Celery (untyped) that smtpkit.contrib.celery and docs/guide/scaling.md
# use, so that the docs' examples type-check strictly.
from typing import Any

from . import signals as signals

class Celery:
    conf: Any
    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        set_as_current: bool = True,
        **kwargs: Any,
    ) -> None: ...
    def task(self, *args: Any, **opts: Any) -> Any: ...
    def close(self) -> None: ...
