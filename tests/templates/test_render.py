"""MailTemplate: escaping, one-line subjects, URL schemes, CSS inlining, loading."""

from __future__ import annotations

import importlib
import pickle
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import ConfigurationError, InvalidMessageError, Message, SMTPKitError
from smtpkit.contrib.templates import (
    DEFAULT_URL_SCHEMES,
    MailTemplate,
    RenderedMail,
    TemplateRenderError,
)

HTML = """<html><head><style>p.hi { color: red }</style></head>
<body><p class="hi">Hello {{ name }}</p>
<p><a href="{{ url }}" title="{{ name }}">your order</a></p></body></html>"""


class Tags(HTMLParser):
    """The body's elements and their attributes, as a mail client's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        if tag not in {"html", "head", "body"}:
            self.tags.append((tag, dict(attrs)))


def parse(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


CONTROL = [
    c
    for c in map(chr, range(0x110000))
    if unicodedata.category(c) in {"Cc", "Zl", "Zp"}
]


def test_html_is_autoescaped_and_text_is_not():
    template = MailTemplate("Hi {{ name }}", text="Hi {{ name }}", html=HTML)
    name = """<script>alert(1)</script>" onmouseover="x" '"""
    rendered = template.render({"name": name, "url": "https://shop.test/o?a=1&b=2"})
    assert rendered.html is not None
    assert parse(rendered.html) == [
        ("p", {"style": "color: red;", "class": "hi"}),
        ("p", {}),
        ("a", {"href": "https://shop.test/o?a=1&b=2", "title": name}),
    ]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html  # text
    assert "<script" not in rendered.html  # attributes too, after CSS inlining
    assert rendered.text == f"Hi {name}"  # text is not HTML: not escaped
    assert rendered.subject == f"Hi {name}"


def test_css_is_inlined_and_the_style_block_dropped():
    rendered = MailTemplate("s", html=HTML).render({"name": "Ann", "url": "/o"})
    assert rendered.html is not None
    assert '<p class="hi" style="color: red;">Hello Ann</p>' in rendered.html
    assert "<style>" not in rendered.html


def test_brackets_in_attribute_values_stay_escaped_through_the_inliner():
    template = MailTemplate(
        "s",
        html='<p title="{{ v }}" class=x>{{ v }}</p><img alt="{{ v }}" src="cid:a">'
        '<br><a href="/x?a=1&b=2" data-x="a>b">k</a>',
    )
    rendered = template.render({"v": "<b>\"x'&>"})
    assert rendered.html == (
        "<html><head></head><body>"
        '<p class="x" title="&lt;b&gt;&quot;x\'&amp;&gt;">&lt;b&gt;"x\'&amp;&gt;</p>'
        '<img alt="&lt;b&gt;&quot;x\'&amp;&gt;" src="cid:a"><br>'
        '<a href="/x?a=1&amp;b=2" data-x="a&gt;b">k</a></body></html>'
    )


def test_css_inlining_can_be_turned_off():
    rendered = MailTemplate("s", html=HTML, inline_css=False).render(
        {"name": "Ann", "url": "/o"}
    )
    assert rendered.html is not None
    assert "<style>" in rendered.html


def test_remote_stylesheets_are_never_fetched():
    html = '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css"></head><body><p>x</p></body></html>'
    rendered = MailTemplate("s", html=html).render()
    assert rendered.html is not None
    assert "<p>x</p>" in rendered.html


def test_text_is_derived_from_the_html_when_not_given():
    rendered = MailTemplate("s", html=HTML).render(
        {"name": "Ann", "url": "https://x.test/o"}
    )
    assert rendered.text == "Hello Ann\n\nyour order (https://x.test/o)"


def test_text_only_template_has_no_html():
    assert MailTemplate("s {{ n }}", text="t {{ n }}").render({"n": 1}) == RenderedMail(
        subject="s 1", text="t 1", html=None
    )


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x01javascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
    ],
)
@pytest.mark.parametrize("text", [None, "a text part"], ids=["derived", "text"])
def test_dangerous_url_schemes_from_the_context_are_refused(url, text):
    template = MailTemplate("s", html=HTML, text=text)
    with pytest.raises(TemplateRenderError, match="URL scheme") as info:
        template.render({"name": "Ann", "url": url})
    assert url.strip() not in str(info.value)  # the URL itself may hold a token


@pytest.mark.parametrize(
    "html",
    [
        '<a href="&#106;avascript:alert(1)">x</a>',
        '<a href="javascript&colon;alert(1)">x</a>',
        '<img src="javascript:alert(1)">',
        '<img srcset="https://x.test/a.png 1x, javascript:alert(1) 2x">',
        '<form action="javascript:alert(1)"></form>',
        '<table background="javascript:alert(1)"></table>',
        '<meta http-equiv="Refresh" content="0; URL=\'javascript:alert(1)\'">',
        '<meta http-equiv="refresh" content="0;javascript:alert(1)">',
        '<img srcset=" , javascript:alert(1)">',
    ],
)
def test_dangerous_urls_written_in_the_template_are_refused(html):
    with pytest.raises(TemplateRenderError, match="'javascript'"):
        MailTemplate("s", html=html).render()


@pytest.mark.parametrize(
    "url",
    [
        "https://x.test/a?b=c",
        "http://x.test",
        "mailto:ann@example.com",
        "tel:+15550100",
        "cid:logo",
        "/relative/path",
        "#top",
        "",
        "&#106;avascript:alert(1)",  # from the context: escaped, so a relative URL
        "javascript",  # no colon: a relative URL
    ],
)
def test_safe_urls_pass(url):
    MailTemplate("s", html=HTML).render({"name": "Ann", "url": url})


@pytest.mark.parametrize(
    "html",
    [
        '<meta http-equiv="refresh" content="5; url=https://x.test/">',
        '<meta http-equiv="refresh" content="5">',
        '<meta name="description" content="javascript: the language">',
        '<img srcset="/a.png 1x, https://x.test/b.png 2x" alt>',
    ],
)
def test_safe_urls_written_in_the_template_pass(html):
    MailTemplate("s", html=html).render()


def test_an_attribute_without_a_value_passes():
    rendered = MailTemplate("s", html="<a href>x</a>", inline_css=False).render()
    assert rendered.html == "<a href>x</a>"


def test_a_context_that_is_no_mapping_is_a_render_error():
    with pytest.raises(TemplateRenderError, match="TypeError"):
        MailTemplate("s", text="t").render(42)  # type: ignore[arg-type]


def test_the_subject_keeps_no_break_spaces_of_the_data():
    template = MailTemplate("{{ price }}\t€", text="t")
    assert template.render({"price": "1\u00a0000"}).subject == "1\u00a0000 €"


def test_url_schemes_are_configurable():
    template = MailTemplate("s", html=HTML, url_schemes=frozenset({"HTTPS", "sms"}))
    template.render({"name": "Ann", "url": "sms:+15550100"})
    with pytest.raises(TemplateRenderError, match="'http'"):
        template.render({"name": "Ann", "url": "http://x.test"})
    assert "javascript" not in DEFAULT_URL_SCHEMES


def test_the_templates_own_line_breaks_become_spaces_in_the_subject():
    template = MailTemplate(
        "Order {{ n }}\n  {% if vip %}\n(VIP)\n{% endif %}\r\n", text="t"
    )
    assert template.render({"n": 7, "vip": True}).subject == "Order 7 (VIP)"


@pytest.mark.parametrize("char", ["\r", "\n", "\r\n", "\x00", "\x0b", "\x85", "\u2028"])
def test_a_line_break_in_subject_data_fails_the_render(char):
    template = MailTemplate("Hi {{ name }}", text="t")
    with pytest.raises(TemplateRenderError, match="control character"):
        template.render({"name": f"Ann{char}Bcc: victim@example.com"})


def test_a_control_character_in_the_subject_template_itself_fails():
    with pytest.raises(TemplateRenderError, match="U\\+0000"):
        MailTemplate("Hi\x00there", text="t").render()


@given(
    st.text(alphabet=st.one_of(st.sampled_from(CONTROL), st.characters()), max_size=30)
)
def test_no_context_value_can_add_a_header(value):
    """Header injection through context data is impossible: every value either
    renders into a one-line Subject of the message, or fails the render."""
    template = MailTemplate("Hello {{ name }}!", text="Body {{ name }}")
    try:
        message = template.message(
            {"name": value}, sender="a@example.com", to="b@example.com"
        )
    except TemplateRenderError:
        assert any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in value)
        return
    except pydantic.ValidationError:  # Message refuses lone surrogates
        assert any(unicodedata.category(c) == "Cs" for c in value)
        return
    assert not any(
        unicodedata.category(c) in {"Cc", "Zl", "Zp"} for c in message.subject
    )
    header_block = message.as_bytes().split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0]
        for line in header_block.split(b"\r\n")
        if not line.startswith((b" ", b"\t"))
    ]
    assert names.count(b"Subject") == 1
    assert set(names) <= {
        b"From", b"To", b"Subject", b"Date", b"Message-ID", b"MIME-Version",
        b"Content-Type", b"Content-Transfer-Encoding",
    }  # fmt: skip


def test_undefined_variables_fail_with_the_name():
    template = MailTemplate("Hi {{ name }}", text="t")
    with pytest.raises(TemplateRenderError, match="'name' is undefined") as info:
        template.render({})
    assert isinstance(info.value, InvalidMessageError)
    assert isinstance(info.value, SMTPKitError)


def test_an_exception_inside_the_template_is_wrapped():
    def boom() -> str:
        raise LookupError("no such product")

    with pytest.raises(
        TemplateRenderError, match="LookupError: no such product"
    ) as info:
        MailTemplate("s", text="{{ boom() }}").render({"boom": boom})
    assert isinstance(info.value.__cause__, LookupError)


def test_keyboard_interrupt_inside_the_template_propagates():
    def stop() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MailTemplate("s", html="<p>{{ stop() }}</p>").render({"stop": stop})


def test_the_sandbox_refuses_reaching_python_internals():
    template = MailTemplate("s", text="{{ name.__class__.__mro__ }}")
    with pytest.raises(TemplateRenderError):
        template.render({"name": "x"})
    unsafe = MailTemplate("s", text="{{ ''.__class__.__subclasses__() }}")
    with pytest.raises(TemplateRenderError, match=r"SecurityError|undefined"):
        unsafe.render()


def test_url_schemes_must_not_be_a_string():
    with pytest.raises(
        ConfigurationError, match="must be a set, not the string 'https'"
    ):
        MailTemplate("s", text="t", url_schemes="https")  # type: ignore[arg-type]


def test_a_template_needs_a_body():
    with pytest.raises(ConfigurationError, match="text template, an HTML template"):
        MailTemplate("subject only")


@pytest.mark.parametrize("part", ["subject", "text", "html"])
def test_a_syntax_error_is_a_configuration_error(part):
    fields = {"subject": "s", "text": "t", part: "{% if %}"}
    with pytest.raises(
        ConfigurationError, match=f"the {part} template has a syntax error"
    ):
        MailTemplate(fields.pop("subject"), **fields)


def test_message_builds_a_multipart_message():
    template = MailTemplate("Hi {{ name }}", html=HTML)
    message = template.message(
        {"name": "Ann", "url": "https://x.test"},
        sender="news@example.com",
        to="ann@example.com",
        reply_to="help@example.com",
        headers={"X-Campaign": "spring"},
        list_unsubscribe=["https://x.test/u/1"],
        list_unsubscribe_one_click=True,
    )
    assert isinstance(message, Message)
    assert message.subject == "Hi Ann"
    assert message.text == "Hello Ann\n\nyour order (https://x.test)"
    assert message.headers == {"X-Campaign": "spring"}
    assert b"multipart/alternative" in message.as_bytes()


def test_from_directory_loads_a_template_set_with_a_shared_layout(tmp_path):
    (tmp_path / "layout.html").write_text(
        "<html><head><style>h1{margin:0}</style></head>"
        "<body>{% block body %}{% endblock %}</body></html>"
    )
    (tmp_path / "welcome.subject.txt").write_text("Welcome, {{ name }}\n")
    (tmp_path / "welcome.html").write_text(
        '{% extends "layout.html" %}{% block body %}<h1>Hi {{ name }}</h1>{% endblock %}'
    )
    (tmp_path / "receipt.subject.txt").write_text("Receipt")
    (tmp_path / "receipt.txt").write_text("Total: {{ total }}\n")
    welcome = MailTemplate.from_directory(tmp_path, "welcome").render({"name": "<b>"})
    assert welcome.subject == "Welcome, <b>"
    assert welcome.html is not None
    assert '<h1 style="margin: 0;">Hi &lt;b&gt;</h1>' in welcome.html
    assert welcome.text == "Hi <b>"
    receipt = MailTemplate.from_directory(str(tmp_path), "receipt").render({"total": 3})
    assert receipt == RenderedMail(subject="Receipt", text="Total: 3\n", html=None)


def test_from_directory_errors(tmp_path):
    with pytest.raises(ConfigurationError, match=r"'none\.subject\.txt' not found"):
        MailTemplate.from_directory(tmp_path, "none")
    (tmp_path / "bare.subject.txt").write_text("s")
    with pytest.raises(ConfigurationError, match="needs a text template"):
        MailTemplate.from_directory(tmp_path, "bare")
    (tmp_path / "broken.subject.txt").write_text("s")
    (tmp_path / "broken.html").write_text("{% include 'missing.html' %}{% if %}")
    with pytest.raises(ConfigurationError, match=r"'broken\.html' has a syntax error"):
        MailTemplate.from_directory(tmp_path, "broken")
    (tmp_path / "gap.subject.txt").write_text("s")
    (tmp_path / "gap.html").write_text("{% include 'missing.html' %}")
    template = MailTemplate.from_directory(tmp_path, "gap")
    with pytest.raises(TemplateRenderError, match=r"missing\.html"):
        template.render()


def test_one_template_renders_from_many_threads_at_once():
    template = MailTemplate(
        "s {{ n }}", html="<style>p{margin:0}</style><p>{{ n }}</p>"
    )
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda n: template.render({"n": n}), range(400)))
    assert [r.html for r in out] == [
        f'<html><head></head><body><p style="margin: 0;">{n}</p></body></html>'
        for n in range(400)
    ]


def test_the_error_pickles_with_its_row():
    error = TemplateRenderError("row 3: boom", index=3, key="cust-9")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (type(copy), str(copy), copy.index, copy.key) == (
        TemplateRenderError,
        "row 3: boom",
        3,
        "cust-9",
    )


def test_a_missing_extra_is_named(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("smtpkit.contrib.templates")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(ImportError, match=r'pip install "pysmtpkit\[templates\]"'):
        importlib.import_module("smtpkit.contrib.templates")


def test_every_control_character_in_a_subject_value_fails_the_render():
    template = MailTemplate("Hi {{ name }}", text="t")
    passed = []
    for char in CONTROL:
        try:
            template.render({"name": f"Ann{char}x"})
        except TemplateRenderError:
            continue
        passed.append(char)
    assert passed == []


MARKUP = st.text(alphabet=st.sampled_from(list("<>\"'&=/ ;#!-ab\n\r\t")), max_size=40)


@given(st.one_of(MARKUP, st.text(max_size=20)))
def test_no_context_value_becomes_markup(value):
    """Whatever the value, the HTML a client parses has exactly the template's
    elements and attributes; the value is only ever text or an attribute value."""
    template = MailTemplate(
        "s",
        html='<style>p{margin:0}</style><p title="{{ v }}">{{ v }}</p>'
        '<a href="/p?q={{ v|urlencode }}">{{ v }}</a>',
    )
    try:
        rendered = template.render({"v": value})
    except TemplateRenderError:  # the inliner takes no lone surrogate
        assert any(unicodedata.category(c) == "Cs" for c in value)
        return
    assert rendered.html is not None
    tags = parse(rendered.html)
    assert [(tag, sorted(attrs)) for tag, attrs in tags] == [
        ("p", ["style", "title"]),
        ("a", ["href"]),
    ]
    assert "<" not in rendered.html.replace("<p ", "").replace("</p>", "").replace(
        "<a ", ""
    ).replace("</a>", "").replace("<html>", "").replace("</html>", "").replace(
        "<head>", ""
    ).replace("</head>", "").replace("<body>", "").replace("</body>", "")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["j", "J"]),
            st.text(alphabet=st.sampled_from(["\t", "\n", "\r"]), max_size=2),
        ),
        min_size=1,
        max_size=1,
    ),
    # NUL is left out: an HTML parser (the inliner's, a browser's) turns it into
    # U+FFFD, which no URL parser strips, so "\0javascript:" is no javascript: URL.
    st.text(alphabet=st.sampled_from([chr(c) for c in range(1, 0x21)]), max_size=3),
    st.lists(st.booleans(), min_size=10, max_size=10),
    st.text(alphabet=st.sampled_from(["\t", "\n"]), max_size=2),
)
def test_javascript_urls_are_refused_however_spelt(first, lead, upper, inside):
    """Leading controls and spaces, tabs and line breaks inside, any letter case:
    what a browser still runs as javascript: is refused, from data or template."""
    word = "".join(
        c.upper() if up else c for c, up in zip("javascript", upper, strict=True)
    )
    url = lead + first[0][0] + first[0][1] + word[1:5] + inside + word[5:] + ":x()"
    with pytest.raises(TemplateRenderError, match="'javascript'"):
        MailTemplate("s", html='<a href="{{ u }}">x</a>').render({"u": url})
    written = url.replace("&", "&amp;").replace('"', "&quot;")
    with pytest.raises(TemplateRenderError, match="'javascript'"):
        MailTemplate("s", html=f'<a href="{written}">x</a>', inline_css=False).render()
