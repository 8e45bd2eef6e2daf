"""Line endings and dot-stuffing on the way to the wire: fast checks, same bytes."""

from __future__ import annotations

import pickle
import re

from hypothesis import example, given
from hypothesis import strategies as st

from smtpkit._mime import normalize_line_endings
from smtpkit._transports._session import dot_stuff

_EOL = re.compile(rb"\r\n|\r|\n")
_TEXT = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" ", b"\r\r", b"\n\n"]),
    max_size=24,
).map(b"".join)


def reference_normalize(data: bytes) -> bytes:
    """Rewrite every line end, whatever the data: what the fast check must equal."""
    data = _EOL.sub(b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def reference_stuff(data: bytes) -> bytes:
    lines = reference_normalize(data)[:-2].split(b"\r\n")
    return b"".join(b"." + line + b"\r\n" if line.startswith(b".") else line + b"\r\n"
                    for line in lines) + b".\r\n"  # fmt: skip


@given(data=_TEXT | st.binary(max_size=40))
@example(data=b"a\rb\nc")  # as many CRs as LFs, none paired
@example(data=b"\n\r")
@example(data=b"a\r\n\rb\n")
def test_normalize_equals_rewriting_every_line_end(data):
    assert normalize_line_endings(data) == reference_normalize(data)


@given(data=_TEXT)
@example(data=b".\r\n")
@example(data=b"a\r\n.b\r\n..\r\n")
def test_dot_stuff_equals_stuffing_line_by_line(data):
    assert dot_stuff(data) == reference_stuff(data)


def test_normalized_bytes_are_not_scanned_again():
    once = normalize_line_endings(b"a\nb")
    assert normalize_line_endings(once) is once
    assert normalize_line_endings(b"a\r\nb\r\n") == b"a\r\nb\r\n"


def test_normalized_bytes_behave_as_bytes():
    data = normalize_line_endings(b"Subject: x\n\nbody")
    assert isinstance(data, bytes)
    assert data == b"Subject: x\r\n\r\nbody\r\n"
    assert repr(data) == repr(b"Subject: x\r\n\r\nbody\r\n")
    assert pickle.loads(pickle.dumps(data)) == data  # noqa: S301 - our own bytes
    assert hash(data) == hash(bytes(data))
