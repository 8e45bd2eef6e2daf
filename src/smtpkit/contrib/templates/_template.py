"""``MailTemplate``: subject, text and HTML rendered from one set of templates."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from smtpkit import AddressLike, ConfigurationError, Message

from ._errors import TemplateRenderError
from ._plaintext import derive_text
from ._safety import (
    DEFAULT_URL_SCHEMES,
    check_tag,
    check_urls,
    escape_attribute_brackets,
    one_line,
    subject_value,
)

__all__ = ["MailTemplate", "RenderedMail"]

_SUBJECT: Final = "{name}.subject.txt"
_TEXT: Final = "{name}.txt"
_HTML: Final = "{name}.html"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    """The three parts of a message, rendered for one recipient.

    Attributes:
        subject: One line, without control characters.
        text: The plain-text body: the text template's, or derived from the HTML.
        html: The HTML body with its CSS inlined; None without an HTML template.
    """

    subject: str
    text: str
    html: str | None


def _environment(
    loader: jinja2.BaseLoader | None, *, autoescape: bool, subject: bool = False
) -> SandboxedEnvironment:
    # Sandboxed: a template edited by someone who is not a developer (a
    # marketing team's campaign) cannot reach Python internals through the data.
    # StrictUndefined: a row missing a field fails, rather than "Dear ,".
    return SandboxedEnvironment(
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=subject_value if subject else None,
    )


class MailTemplate:
    """Subject, plain-text and HTML templates (Jinja2) for personalised mail.

    The HTML template is autoescaped: a value from the context is written as
    text, never as markup, also inside quoted attributes.  The subject and text
    templates are not escaped (they are not HTML).  Rendering the HTML then
    inlines its ``<style>`` rules into ``style`` attributes (css-inline; remote
    stylesheets are never fetched), checks every link, image and form URL
    against *url_schemes* (``javascript:`` and ``data:`` are refused however
    they are spelled), and derives the text part from it when there is no
    text template.  Undefined variables are errors.

    Templates run in Jinja2's sandbox.  A ``MailTemplate`` is immutable once
    built and safe to render from many threads at once.

    Args:
        subject: The subject template; rendered to one line (the template's
            own line breaks become spaces, a value's line break is an error).
        text: The plain-text template; derived from the HTML when None.
        html: The HTML template.
        inline_css: Inline the HTML's ``<style>`` rules (default True).
        url_schemes: URL schemes allowed in the HTML's links and images
            (default ``DEFAULT_URL_SCHEMES``); relative URLs are always allowed.

    Raises:
        ConfigurationError: Neither *text* nor *html* was given, a template
            has a syntax error, or *url_schemes* is a string.
    """

    def __init__(
        self,
        subject: str,
        *,
        text: str | None = None,
        html: str | None = None,
        inline_css: bool = True,
        url_schemes: frozenset[str] = DEFAULT_URL_SCHEMES,
    ) -> None:
        self._setup(None, inline_css, url_schemes)
        self._subject = self._compile(self._subject_env, subject, "subject")
        self._text = (
            None if text is None else self._compile(self._text_env, text, "text")
        )
        self._html = (
            None if html is None else self._compile(self._html_env, html, "html")
        )
        self._check_parts()

    @classmethod
    def from_directory(
        cls,
        directory: str | os.PathLike[str],
        name: str,
        *,
        inline_css: bool = True,
        url_schemes: frozenset[str] = DEFAULT_URL_SCHEMES,
    ) -> MailTemplate:
        """Load ``{name}.subject.txt``, ``{name}.txt`` and ``{name}.html``.

        The subject file is required, and at least one of the other two.  The
        templates may ``{% extends %}`` or ``{% include %}`` other files of
        *directory* (a shared layout); the HTML ones are autoescaped whatever
        their file name.

        Args:
            directory: The folder of template files.
            name: The template set's name, the files' common stem.
            inline_css: As for ``MailTemplate``.
            url_schemes: As for ``MailTemplate``.

        Raises:
            ConfigurationError: The subject file is missing, or both body
                files; or a template has a syntax error.
        """
        self = cls.__new__(cls)
        self._setup(jinja2.FileSystemLoader(directory), inline_css, url_schemes)
        self._subject = self._load(self._subject_env, _SUBJECT.format(name=name))
        text, html = _TEXT.format(name=name), _HTML.format(name=name)
        exists = os.path.join(directory, text), os.path.join(directory, html)
        self._text = (
            self._load(self._text_env, text) if os.path.isfile(exists[0]) else None
        )
        self._html = (
            self._load(self._html_env, html) if os.path.isfile(exists[1]) else None
        )
        self._check_parts()
        return self

    def _setup(
        self,
        loader: jinja2.BaseLoader | None,
        inline_css: bool,
        url_schemes: frozenset[str],
    ) -> None:
        self._subject_env = _environment(loader, autoescape=False, subject=True)
        self._text_env = _environment(loader, autoescape=False)
        self._html_env = _environment(loader, autoescape=True)
        self._inliner = (
            css_inline.CSSInliner(load_remote_stylesheets=False) if inline_css else None
        )
        # Reachable from untyped callers: a string would allow its letters.
        if isinstance(url_schemes, str):  # type: ignore[unreachable]
            msg = f"url_schemes must be a set, not the string {url_schemes!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self._url_schemes = frozenset(scheme.lower() for scheme in url_schemes)

    @staticmethod
    def _compile(env: SandboxedEnvironment, source: str, part: str) -> jinja2.Template:
        try:
            return env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            msg = f"the {part} template has a syntax error (line {exc.lineno}): {exc.message}"
            raise ConfigurationError(msg) from exc

    @staticmethod
    def _load(env: SandboxedEnvironment, name: str) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateNotFound as exc:
            msg = f"template {exc.name!r} not found"
            raise ConfigurationError(msg) from exc
        except jinja2.TemplateSyntaxError as exc:
            msg = (
                f"template {exc.name!r} has a syntax error (line {exc.lineno}): "
                f"{exc.message}"
            )
            raise ConfigurationError(msg) from exc

    def _check_parts(self) -> None:
        if self._text is None and self._html is None:
            msg = "a MailTemplate needs a text template, an HTML template, or both"
            raise ConfigurationError(msg)

    def render(self, context: Mapping[str, object] | None = None) -> RenderedMail:
        """Render the subject, text and HTML for one recipient.

        Args:
            context: The template variables (a mail merge's row).

        Returns:
            The rendered parts.

        Raises:
            TemplateRenderError: An undefined variable, a subject value with a
                control character, a refused URL scheme, or any exception raised
                while rendering (the ``__cause__``).  Exceptions that are not
                ``Exception`` (``KeyboardInterrupt``) propagate unchanged.
        """
        try:
            values = dict(context or {})
            subject = one_line(self._subject.render(values))
            text = None if self._text is None else self._text.render(values)
            html = None
            if self._html is not None:
                html = self._render_html(self._html, values)
                if text is None:  # one parse derives the text and checks the links
                    text = derive_text(html, self._check_tag)
                else:
                    check_urls(html, self._url_schemes)
        except TemplateRenderError:
            raise
        except Exception as exc:
            msg = f"cannot render the template: {type(exc).__name__}: {exc}"
            raise TemplateRenderError(msg) from exc
        # _check_parts made sure there is a text or an HTML template.
        return RenderedMail(subject=subject, text=text or "", html=html)

    def _render_html(self, template: jinja2.Template, values: dict[str, object]) -> str:
        """The HTML as the client gets it: rendered, CSS inlined, not yet checked."""
        html = template.render(values)
        if self._inliner is not None:
            html = escape_attribute_brackets(self._inliner.inline(html))
        return html

    def _check_tag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        check_tag(tag, attrs, self._url_schemes)

    def message(
        self,
        context: Mapping[str, object] | None = None,
        *,
        sender: AddressLike,
        to: AddressLike | Sequence[AddressLike],
        cc: AddressLike | Sequence[AddressLike] = (),
        bcc: AddressLike | Sequence[AddressLike] = (),
        reply_to: AddressLike | Sequence[AddressLike] = (),
        headers: Mapping[str, str] | None = None,
        list_unsubscribe: Sequence[str] = (),
        list_unsubscribe_one_click: bool = False,
    ) -> Message:
        """Render for one recipient and build the ``Message``.

        For the ``Message`` fields not listed here, build it from
        :meth:`render`'s parts yourself.

        Args:
            context: As for :meth:`render`.
            sender: The ``From`` mailbox.
            to: ``To`` recipients.
            cc: ``Cc`` recipients.
            bcc: Recipients that never appear in the headers.
            reply_to: ``Reply-To`` mailboxes.
            headers: Extra headers.
            list_unsubscribe: Unsubscribe URIs (``List-Unsubscribe``).
            list_unsubscribe_one_click: Add ``List-Unsubscribe-Post`` (RFC 8058).

        Returns:
            The message, text-only or multipart/alternative.

        Raises:
            TemplateRenderError: As for :meth:`render`.
            pydantic.ValidationError: A field is not valid (an address, a header).
        """
        rendered = self.render(context)
        return Message(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            headers=headers or {},
            list_unsubscribe=tuple(list_unsubscribe),
            list_unsubscribe_one_click=list_unsubscribe_one_click,
        )
