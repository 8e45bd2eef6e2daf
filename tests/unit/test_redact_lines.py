"""A secret a server splits across the lines of a multiline reply is still hidden.

Review C: "535-5.7.8 bad AGFsaWNlAEh1" / "535 5.7.8 bnRlcjJzZWNyZXQ=" showed the
second half of PLAIN's response, since each line alone held less than a piece
of it.  ``SecretForms.redact_lines`` searches the lines as one text.
"""

from __future__ import annotations

import base64
import itertools

from hypothesis import given
from hypothesis import strategies as st

from smtpkit._redaction import SecretForms

SECRET = base64.b64encode(b"\0alice\0Hunter2secret").decode()
TOKEN_CHARS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)


@given(
    secret=st.text(TOKEN_CHARS, min_size=12, max_size=60),
    data=st.data(),
    status=st.sampled_from(["", "5.7.8 "]),
)
def test_a_secret_split_anywhere_across_two_lines_is_hidden_on_both(
    secret, data, status
):
    cut = data.draw(st.integers(1, len(secret) - 1))
    text = f"bad {secret[:cut]}\n{status}{secret[cut:]}"
    shown = SecretForms([secret]).redact_lines(text)
    assert shown == f"bad ***\n{status}***"


@given(cuts=st.lists(st.integers(1, len(SECRET) - 1), min_size=1, max_size=5))
def test_a_secret_split_over_many_lines_keeps_every_line_break(cuts):
    points = [0, *sorted(set(cuts)), len(SECRET)]
    pieces = [SECRET[a:b] for a, b in itertools.pairwise(points)]
    text = "\n".join(f" {piece} " for piece in pieces)
    shown = SecretForms([SECRET]).redact_lines(text)
    assert shown.count("\n") == len(pieces) - 1
    assert all(piece not in shown for piece in pieces if len(piece) >= 4)
    assert set(shown.replace("\n", "").replace("***", "")) <= {" "}


def test_a_single_line_and_an_innocent_multiline_reply_are_unchanged():
    forms = SecretForms([SECRET])
    assert forms.redact_lines("bad") == "bad"
    assert forms.redact_lines(f"bad {SECRET}") == "bad ***"
    text = "Authentication failed\n5.7.8 see https://help.example/auth"
    assert forms.redact_lines(text) == text
    assert SecretForms(()).redact_lines(text) == text
