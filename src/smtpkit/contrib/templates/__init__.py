"""Personalised mail from Jinja2 templates, and mail merge (``smtpkit[templates]``).

One ``MailTemplate`` holds a subject, a plain-text and an HTML template.  The
HTML is autoescaped (recipient data cannot become markup), its CSS is inlined for
mail clients, its links are checked against a list of safe URL schemes, and a
plain-text part is derived from it when no text template is given.  ``merge``
turns an iterable of rows into messages lazily, for ``Mailer.send_many`` and
``send_iter``; a row that fails to render becomes that row's failed result.

Install it with the ``templates`` extra (``pip install "pysmtpkit[templates]"``).
See docs/guide/templates.md.
"""

from __future__ import annotations

try:
    import css_inline  # noqa: F401 - only to say which extra is missing
    import jinja2  # noqa: F401 - only to say which extra is missing
except ImportError as exc:
    msg = (
        "smtpkit.contrib.templates needs Jinja2 and css-inline: "
        'pip install "pysmtpkit[templates]"'
    )
    raise ImportError(msg) from exc

from ._errors import TemplateRenderError
from ._merge import merge
from ._plaintext import html_to_text
from ._safety import DEFAULT_URL_SCHEMES
from ._template import MailTemplate, RenderedMail

__all__ = [
    "DEFAULT_URL_SCHEMES",
    "MailTemplate",
    "RenderedMail",
    "TemplateRenderError",
    "html_to_text",
    "merge",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):  # reprs and docs name the public module
        _obj.__module__ = __name__
del _name, _obj
