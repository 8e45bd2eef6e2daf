"""Skip a test whose system service is missing, but fail it under CI.

On a developer's machine a missing program (Postfix, OpenDKIM, smtp-sink,
microsocks...) is a reason to skip; under CI (the ``CI`` environment variable is
set) the setup installs them all, so a missing one must not pass silently.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["service_unavailable"]


def service_unavailable(service: str, reason: object) -> NoReturn:
    """Skip the running test as "*service* unavailable: *reason*"; fail it under CI."""
    message = f"{service} unavailable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
