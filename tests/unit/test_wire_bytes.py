"""Line endings and dot-stuffing on the way to the wire: fast checks, same bytes."""

from __future__ import annotations

import pickle
import re

from hypothesis import example, given
from hypothesis import strategies as st

from smtpkit._mime import has_dot_line, normalize_line_endings
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


def reference_has_dot_line(data: bytes) -> bool:
    return any(
        line.startswith(b".") for line in reference_normalize(data).split(b"\r\n")
    )


@given(data=_TEXT | st.binary(max_size=40))
@example(data=b".")  # a dot at the very start
@example(data=b"a\r\n.b\nc")  # a dot line before a bare LF: still rewritten
@example(data=b"a\n.b")  # a bare LF before a dot
@example(data=b"a\r\n.b\rc")  # a dot line before a lone CR
@example(data=b"a\r\n.b\r\n")  # a dot line in clean bytes: known without a scan
def test_normalizing_tells_the_dot_lines_it_saw(data):
    normal = normalize_line_endings(data)
    assert normal == reference_normalize(data)
    assert has_dot_line(normal) is reference_has_dot_line(data)
    # The same answer for plain bytes, which are scanned.
    assert has_dot_line(bytes(normal)) is reference_has_dot_line(data)
    # And dot-stuffing of what was normalised matches line-by-line stuffing.
    assert dot_stuff(normal) == reference_stuff(data)
