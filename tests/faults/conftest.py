"""Fixtures for the smtp-sink fault suite."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..services import service_unavailable
from .smtpsink import smtp_sink_unavailable_reason


@pytest.fixture
def sink_directory() -> Iterator[Path]:
    """A fresh directory for the sinks' dumps, skipping (or failing under CI)
    when smtp-sink cannot run.

    Not pytest's ``tmp_path``: that is mode 0700, and smtp-sink runs as nobody.
    """
    reason = smtp_sink_unavailable_reason()
    if reason is not None:
        service_unavailable("smtp-sink", reason)
    directory = Path(tempfile.mkdtemp(prefix="smtpkit-faults-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
