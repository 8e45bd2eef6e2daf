"""The URL check's corners: conditional comments, meta refresh, srcset, ping;
and escaping brackets in attribute values in linear time."""

from __future__ import annotations

import pytest

from smtpkit.contrib.templates import MailTemplate, TemplateRenderError

# Outlook's "bulletproof button": VML inside a conditional comment, which
# Outlook renders (and other clients skip).
VML_BUTTON = """<html><body>
<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="{{ url }}"
 style="height:40px;width:200px" fill="t"><center>Pay now</center></v:roundrect>
<![endif]--><p>Hello {{ name }}</p></body></html>"""


@pytest.mark.parametrize(
    "url",
    ["file://attacker.example/x", "javascript:alert(1)", "ms-word:ofe|u|https://x"],
)
@pytest.mark.parametrize("inline_css", [True, False])
@pytest.mark.parametrize("text", [None, "a text part"], ids=["derived", "text"])
def test_links_inside_conditional_comments_are_checked(url, inline_css, text):
    template = MailTemplate("s", html=VML_BUTTON, text=text, inline_css=inline_css)
    with pytest.raises(TemplateRenderError, match=r"<v:roundrect href=\.\.\.>"):
        template.render({"name": "Ann", "url": url})


@pytest.mark.parametrize("text", [None, "a text part"], ids=["derived", "text"])
def test_a_safe_conditional_comment_passes_and_is_not_text(text):
    template = MailTemplate("s", html=VML_BUTTON, text=text)
    rendered = template.render({"name": "Ann", "url": "https://x.test/pay"})
    assert rendered.html is not None
    assert '<!--[if mso]><v:roundrect xmlns:v="' in rendered.html
    assert rendered.text == (text or "Hello Ann")


def test_any_comment_holding_a_tag_is_checked():
    html = '<!-- <a href="javascript:alert(1)">old</a> --><p>Hi</p>'
    with pytest.raises(TemplateRenderError, match="'javascript'"):
        MailTemplate("s", html=html, inline_css=False).render()
    with pytest.raises(TemplateRenderError, match="'javascript'"):
        MailTemplate("s", html=html, text="t").render()


def test_comments_without_tags_pass():
    html = "<!-- javascript:alert(1) is only text here --><p>Hi</p>"
    assert MailTemplate("s", html=html).render().text == "Hi"
