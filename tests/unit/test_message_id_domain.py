"""``Mailer(message_id_domain=...)`` encodes IDNs as addresses' domains are.

The stdlib's ``str.encode("idna")`` is IDNA 2003: it maps ``faß.de`` to ``fass.de``,
folds full-width letters and drops soft hyphens and zero-width spaces, so the ids
named a domain nobody wrote.  Now the IDNA 2008 path (``pysmtpkit[idna]``) is used,
and anything a mapping would change is a ``ConfigurationError`` naming the domain.
"""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Address, ConfigurationError, Mailer, Message, SMTPConfig
from smtpkit.testing import FakeTransport

from .test_address_edges import idna_path, without_idna

__all__ = ["idna_path"]


def message_id(domain: str) -> str:
    with Mailer(transport=FakeTransport(), message_id_domain=domain) as mailer:
        result = mailer.send(Message(sender="a@example.com", to="b@example.com"))
    assert result.message_id is not None
    return result.message_id


def test_sharp_s_is_encoded_by_idna_2008_not_mapped_to_ss() -> None:
    assert message_id("faß.de").endswith("@xn--fa-hia.de>")


def test_without_the_idna_extra_a_domain_idna_2003_would_change_is_refused() -> None:
    with without_idna(), pytest.raises(ConfigurationError) as caught:
        Mailer(transport=FakeTransport(), message_id_domain="faß.de")
    assert "'faß.de'" in str(caught.value)
    assert "pysmtpkit[idna]" in str(caught.value)


@pytest.mark.usefixtures("idna_path")
@pytest.mark.parametrize(
    "domain",
    [
        "ＥＸＡＭＰＬＥ.com",
        "exam\u00adple.com",
        "a\u200bb.com",
        "example。com",
        "ﬁ.example",
    ],
)
def test_a_domain_the_mapping_would_change_is_refused_by_name(domain: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Mailer(transport=FakeTransport(), message_id_domain=domain)
    assert repr(domain) in str(caught.value)


@pytest.mark.usefixtures("idna_path")
@pytest.mark.parametrize(
    ("domain", "encoded"),
    [("bücher.example", "xn--bcher-kva.example"), ("例子.cn", "xn--fsqu00a.cn"),
     ("Mail.Example.COM", "Mail.Example.COM"), ("xn--fa-hia.de", "xn--fa-hia.de")],
)  # fmt: skip
def test_valid_domains_are_encoded_on_both_paths(domain: str, encoded: str) -> None:
    assert message_id(domain).endswith(f"@{encoded}>")


@given(
    st.text(st.sampled_from("abcß-.üé例子\u00ad\u200bＥ。ﬁ"), min_size=1, max_size=12)
)
def test_a_message_id_domain_is_encoded_exactly_as_an_address_domain(
    domain: str,
) -> None:
    try:
        address: str | None = Address(email=f"a@{domain}").ascii_email
    except ValueError:
        address = None
    try:
        generated = message_id(domain)
    except ConfigurationError:
        assert address is None or len(address) > 253 + 2  # only length differs
        return
    assert address is not None
    assert generated.endswith(f"@{address.partition('@')[2]}>")


# -- SMTPConfig.host: the socket and ssl modules would encode it with IDNA 2003 ------


def test_a_unicode_host_is_stored_as_its_idna_2008_a_labels() -> None:
    assert SMTPConfig(host="faß.de").host == "xn--fa-hia.de"  # not fass.de
    assert SMTPConfig(host="例子.cn").host == "xn--fsqu00a.cn"


@pytest.mark.parametrize("host", ["faß.de", "ＥＸＡＭＰＬＥ.com", "exam\xadple.com"])
def test_a_host_that_idna_2003_would_change_is_refused_without_the_extra(host) -> None:
    with without_idna(), pytest.raises(pydantic.ValidationError, match="host"):
        SMTPConfig(host=host)


@pytest.mark.parametrize(
    ("host", "stored"),
    [
        ("bücher.example.", "xn--bcher-kva.example."),  # absolute: the root dot stays
        ("mail.example.com.", "mail.example.com."),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_an_absolute_unicode_host_keeps_its_root_dot(idna_path, host, stored) -> None:
    assert SMTPConfig(host=host).host == stored


@pytest.mark.parametrize(
    "host", ["bücher.example..", "bücher..example", ".bücher.example"]
)
def test_only_one_root_dot_is_taken_off(idna_path, host) -> None:
    with pytest.raises(pydantic.ValidationError, match="not a valid host name"):
        SMTPConfig(host=host)
