"""html_to_text: the plain-text part derived from an HTML body."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit.contrib.templates import html_to_text

PAGE = """<html><head><title>T</title><style>p { color: red }</style>
<script>var x = 1;</script></head>
<body><h1>Hello   Ann</h1><p>Your <b>order</b> is
ready. See <a href="https://shop.test/o/1">your order</a>.</p>
<div><div><p>Nested</p></div></div>
<ul><li>one</li><li>two <a href="https://x.test">https://x.test</a></li></ul>
<p>Write to <a href="mailto:help@x.test">help@x.test</a><br>or call &amp; &lt;ask&gt;</p>
<table><tr><th>a</th><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
<pre>  keep
   this</pre><img alt="Logo" src="cid:logo"><img src="cid:spacer">
<p><a href="#top">Top</a> <a href="cid:x">Inline</a> <a>Bare</a>
<a href="https://x.test/i"><img src="cid:i"></a></p></body></html>"""


def test_a_page_becomes_readable_text():
    assert html_to_text(PAGE) == (
        "Hello Ann\n\n"
        "Your order is ready. See your order (https://shop.test/o/1).\n\n"
        "Nested\n\n"
        "- one\n"
        "- two https://x.test\n\n"
        "Write to help@x.test\n"
        "or call & <ask>\n\n"
        "a b\n"
        "c d\n\n"
        "  keep\n"
        "   this\n\n"
        "Logo\n\n"
        "Top Inline Bare https://x.test/i"
    )


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("", ""),
        ("plain words", "plain words"),
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("<p>unclosed <head>gone", "unclosed"),
        ("</style>after", "after"),
        ("<head><meta><x>gone</x></head>body", "body"),
        ("<ol><li><p>x</p></li></ol>", "- x"),
        ('<a href="https://a.test">link <b>text</b></a>', "link text (https://a.test)"),
    ],
)
def test_small_cases(html, text):
    assert html_to_text(html) == text


@given(st.text(alphabet=st.sampled_from(list("<>/ab pdivlr=\"'&;#\n")), max_size=60))
def test_any_input_gives_stripped_lines_without_long_blank_runs(html):
    text = html_to_text(html)
    assert "\n\n\n" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))
    assert text == text.strip("\n")
