"""Addresses at the edges: control characters, IDNA, strict parsing, recipient pairs.

Each promise is checked for a whole class of input with hypothesis, next to the
example that showed it broken (issue 8).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterator

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit import Address, Attachment, Envelope, Message, _address
from smtpkit._address import FORBIDDEN_CHARS


def msg(**fields: object) -> Message:
    return Message(**{"sender": "me@example.com", "to": "you@example.com", **fields})


# -- every header-ish field refuses every forbidden character ---------------------

# Fields where any text is legal, TAB included.
TEXT_FIELDS: dict[str, Callable[[str], object]] = {
    "subject": lambda v: msg(subject=v),
    "Address.name": lambda v: Address(email="a@example.com", name=v),
    "header value": lambda v: msg(headers={"X-Custom": v}),
    "Attachment.filename": lambda v: Attachment(filename=f"f{v}", content=b"x"),
    "list_unsubscribe": lambda v: msg(list_unsubscribe=f"https://example.com/u?{v}"),
    "reply_to name": lambda v: msg(reply_to=Address(email="r@example.com", name=v)),
}
# Fields where the value lands in an address, so only letters and digits are legal.
ADDRESS_FIELDS: dict[str, Callable[[str], object]] = {
    "Address email": lambda v: Address(email=f"a{v}@example.com"),
    "Address string": lambda v: Address(f"N{v} <a{v}@example.com>"),
    "Address domain": lambda v: Address(email=f"a@example{v}.com"),
    "(name, email)": lambda v: Address.model_validate((f"N{v}", f"a{v}@example.com")),
    "sender": lambda v: msg(sender=f"s{v}@example.com"),
    "to": lambda v: msg(to=f"t{v}@example.com"),
    "cc": lambda v: msg(cc=[f"C{v} <c@example.com>"]),
    "bcc": lambda v: msg(bcc=(f"B{v}", "b@example.com")),
    "reply_to": lambda v: msg(reply_to=f"r{v}@example.com"),
    "envelope_sender": lambda v: msg(envelope_sender=f"bounce{v}@example.com"),
    "Envelope.sender": lambda v: Envelope(
        sender=f"s{v}@example.com", recipients=["r@x.org"]
    ),
    "Envelope.recipients": lambda v: Envelope(
        sender="", recipients=[f"r{v}@example.com"]
    ),
}
ALL_FIELDS = {**TEXT_FIELDS, **ADDRESS_FIELDS}
# No "@": it would turn a (name, email) pair into two recipients.
_PAD = st.text(
    st.characters(
        exclude_categories=("Cs",), exclude_characters={*FORBIDDEN_CHARS, "@"}
    ),
    max_size=6,
)
_TEXT_PAD = st.text(
    st.characters(categories=("L", "N", "P", "S"), exclude_characters="<>")
    | st.just("\t"),
    max_size=8,
)
_ADDRESS_PAD = st.text(st.characters(categories=("L", "N")), max_size=6)


@pytest.mark.parametrize("field", sorted(ALL_FIELDS))
def test_every_forbidden_char_is_refused_in_every_field(field):
    for bad in sorted(FORBIDDEN_CHARS):
        for value in (bad, f"x{bad}", f"{bad}x", f"ü{bad}例"):
            with pytest.raises(pydantic.ValidationError, match="control characters"):
                ALL_FIELDS[field](value)


@given(
    field=st.sampled_from(sorted(ALL_FIELDS)),
    bad=st.sampled_from(sorted(FORBIDDEN_CHARS)),
    head=_PAD,
    tail=_PAD,
)
def test_forbidden_chars_are_refused_whatever_surrounds_them(field, bad, head, tail):
    with pytest.raises(pydantic.ValidationError, match="control characters"):
        ALL_FIELDS[field](head + bad + tail)


@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
@given(value=_TEXT_PAD)
def test_tab_and_ordinary_unicode_pass_in_text_fields(field, value):
    TEXT_FIELDS[field](value)
    TEXT_FIELDS[field](f"a\t{value}\tb")


@pytest.mark.parametrize("field", sorted(ADDRESS_FIELDS))
@given(value=_ADDRESS_PAD.filter(lambda v: "@" not in v))
def test_ordinary_unicode_letters_pass_in_address_fields(field, value):
    if field == "Address domain":
        value = value.lower().encode("ascii", "ignore").decode()  # IDNA is tested below
    ADDRESS_FIELDS[field](value)


# -- IDNA: never send to a different domain ----------------------------------------


@contextlib.contextmanager
def without_idna() -> Iterator[None]:
    """Make ``import idna`` fail, as when pysmtpkit[idna] is not installed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "idna", None)
        _address._has_idna.cache_clear()
        try:
            yield
        finally:
            _address._has_idna.cache_clear()


@pytest.fixture(params=["idna", "stdlib"])
def idna_path(request) -> Iterator[str]:
    if request.param == "idna":
        assert _address._has_idna()  # the test extra installs it
        yield request.param
        return
    with without_idna():
        yield request.param


def domain_of(address: Address) -> str:
    return address.ascii_email.rpartition("@")[2]


@pytest.mark.parametrize(
    ("domain", "a_labels"),
    [
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.de", "xn--bcher-kva.de"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("bu\u0308cher.de", "xn--bcher-kva.de"),  # NFD input is the same name
    ],
)
def test_plain_idns_work_with_and_without_idna(idna_path, domain, a_labels):
    address = Address(email=f"ada@{domain}")
    assert domain_of(address) == a_labels
    assert address.dedupe_key() == f"ada@{a_labels}"
    envelope = msg(to=address).to_envelope()
    assert envelope.recipients == (f"ada@{a_labels}",)
    assert Envelope(sender=f"b@{domain}", recipients=[f"c@{domain}"]).sender == (
        f"b@{a_labels}"
    )


@pytest.mark.parametrize(
    ("domain", "a_labels"),
    [("faß.de", "xn--fa-hia.de"), ("ας.gr", "xn--mxa8a.gr")],
)
def test_idna_2008_keeps_deviation_characters(domain, a_labels):
    # IDNA 2003 would send faß.de to fass.de, and map the final sigma of ας.gr.
    assert domain_of(Address(email=f"a@{domain}")) == a_labels
    envelope = Envelope(sender="", recipients=[f"a@{domain}"])
    assert envelope.recipients == (f"a@{a_labels}",)


@pytest.mark.parametrize(
    "domain",
    [
        "a\u200db.de",
        "♥.com",
        "a_b.bücher.de",
        # UTS 46 would map these to other text: never sent to what was not written.
        "exa\u200bmple.com",
        "exa\u00admple.com",
        "ＡＢＣ.de",
        "a。b.jp",
        "evil\u037eorg.de",
    ],
)
def test_idna_2008_refusals_name_the_domain(domain):
    with pytest.raises(
        pydantic.ValidationError, match=r"IDNA 2008|host name|would be changed"
    ) as info:
        Address(email=f"a@{domain}")
    assert repr(domain)[1:-1] in str(info.value)


@pytest.mark.parametrize(
    ("domain", "changed"),
    [
        ("faß.de", "fass.de"),
        ("ας.gr", "ασ.gr"),
        ("a\u200db.de", "ab.de"),
        ("a\u200cb.de", "ab.de"),
        ("ＡＢＣ.de", "abc.de"),
        ("ﬁ.de", "fi.de"),
    ],
)
def test_without_idna_what_idna_2003_would_change_is_refused(domain, changed):
    with without_idna():
        for build in (
            lambda: Address(email=f"a@{domain}"),
            lambda: Envelope(sender="", recipients=[f"a@{domain}"]),
            lambda: msg(envelope_sender=f"a@{domain}"),
        ):
            with pytest.raises(pydantic.ValidationError) as info:
                build()
            text = str(info.value)
            assert f"domain {domain!r} would be changed" in text
            assert f"to {changed!r}" in text
            assert "install pysmtpkit[idna]" in text


@pytest.mark.parametrize("domain", ["例え。テスト", "♥.com"])
def test_without_idna_non_letters_are_refused(domain):
    with without_idna(), pytest.raises(pydantic.ValidationError, match="smtpkit"):
        Address(email=f"a@{domain}")


def test_a_labels_are_always_accepted():
    with without_idna():
        assert domain_of(Address(email="a@xn--fa-hia.de")) == "xn--fa-hia.de"


def test_import_smtpkit_never_imports_idna():
    code = "import sys, smtpkit; assert 'idna' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


_LABEL_CHARS = "abzAZ09-üÜßςσΣ例えテスト\u200d\u200cＡﬁİ♥。u\u0308"
_IDN = st.lists(
    st.text(st.sampled_from(_LABEL_CHARS), min_size=1, max_size=6),
    min_size=1,
    max_size=3,
)


def _punycode_reading(domain: str) -> str:
    labels = domain.split(".")
    return ".".join(
        label[4:].encode("ascii").decode("punycode")
        if label.startswith("xn--")
        else label
        for label in labels
    ).lower()


def stdlib_encoding(domain: str) -> str | None:
    """The A-labels the path without ``idna`` sends *domain* to, or None if refused."""
    with without_idna():
        try:
            return domain_of(Address(email=f"a@{domain}"))
        except pydantic.ValidationError:
            return None


@given(labels=_IDN)
def test_without_idna_an_accepted_domain_is_never_a_different_domain(labels):
    domain = ".".join([*labels, "de"])
    stdlib = stdlib_encoding(domain)
    if stdlib is None:
        return
    assert _punycode_reading(stdlib) == unicodedata.normalize("NFC", domain.lower())
    try:
        idna_2008 = domain_of(Address(email=f"a@{domain}"))
    except pydantic.ValidationError:
        return  # IDNA 2008 refuses it: no domain at all, still not a different one
    assert idna_2008.lower() == stdlib.lower()


_ANY_LETTER = st.characters(
    categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Nd"), min_codepoint=0xA0
)


@settings(max_examples=400)
@given(
    labels=st.lists(
        st.text(_ANY_LETTER, min_size=1, max_size=5), min_size=1, max_size=2
    )
)
def test_without_idna_any_accepted_domain_is_exactly_what_idna_2008_sends(labels):
    # Differential: whatever the stdlib path accepts, the idna package (IDNA 2008,
    # UTS 46) accepts too and turns into the very same A-labels.
    domain = ".".join([*labels, "de"])
    stdlib = stdlib_encoding(domain)
    if stdlib is not None:
        assert domain_of(Address(email=f"a@{domain}")) == stdlib


# -- one strict parse for every input form -------------------------------------------

# Each was accepted and rewritten (or passed through) before.
BAD_EMAILS = [
    "ada@example.com extra",
    "ada @example.com",
    "eve@@example.com",
    "@relay.example:user@good.example",
    "a@evil.example@good.example",
    '"john doe"@example.com',
    "a@example.com (Ada)",
    "a@-example.com",
    "a@example-.com",
    "a@example..com",
    "a@example.com.",
    "a@ex_ample.com",
    "a@[1.2.3]",
    "a@[IPv6:fe80::1%eth0]",
    "a@[example.com]",
    "a@" + "b" * 64 + ".com",
    "a,b@example.com",
]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_bad_addr_spec_is_refused_in_every_form(email):
    for build in (
        lambda: Address(email),
        lambda: Address(email=email, name="X"),
        lambda: Address.model_validate(("X", email)),
        lambda: Envelope(sender=email, recipients=["r@example.com"]),
        lambda: Envelope(sender="", recipients=["r@example.com", email]),
        lambda: msg(envelope_sender=email),
        lambda: msg(to=["ok@example.com", email]),
    ):
        with pytest.raises(pydantic.ValidationError) as info:
            build()
        assert repr(email) in str(info.value) or repr(email.strip()) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "Ada <ada@example.com> extra",
        "Ada <ada@example.com",
        "Ada ada@example.com>",
        "A <a@example.com>, B <b@example.com>",
        "a@example.com, b@example.com",
        "Doe, John <jd@example.com>",
        '"Ada <ada@example.com>',
        "Ada <ada@example.com> (comment)",
        "(comment) Ada <ada@example.com>",
        "Ada < ada@example.com>",
        "Ada <<ada@example.com>>",
    ],
)
def test_name_address_string_that_would_be_repaired_is_refused(text):
    with pytest.raises(pydantic.ValidationError):
        Address(text)


@pytest.mark.parametrize(
    ("text", "name", "email"),
    [
        ("张三 <zs@example.com>", "张三", "zs@example.com"),
        ('"Doe, John" <jd@example.com>', "Doe, John", "jd@example.com"),
        ("zs@example.com", None, "zs@example.com"),
        ('"a\\"b" <x@y.org>', 'a"b', "x@y.org"),
        ("<x@y.org>", None, "x@y.org"),
        ('"" <x@y.org>', None, "x@y.org"),
        ("  John Q. Public  <jqp@example.com> ", "John Q. Public", "jqp@example.com"),
        ("a..b@docomo.ne.jp", None, "a..b@docomo.ne.jp"),
        ("a@[192.0.2.1]", None, "a@[192.0.2.1]"),
        ("a@[IPv6:2001:db8::1]", None, "a@[IPv6:2001:db8::1]"),
    ],
)
def test_accepted_forms_round_trip(text, name, email):
    address = Address(text)
    assert (address.name, address.email) == (name, email)
    assert Address(str(address)) == address


def test_quoted_local_parts_are_refused_with_a_reason():
    with pytest.raises(pydantic.ValidationError, match="quoted local parts"):
        Address('"john doe"@example.com')


_TOKENS = st.sampled_from(
    ["ada", "x", "@", "example.com", "例子.cn", "ü", " ", "<", ">", '"', ",", ":", ";",
     "(", ")", "[", "]", "\\", ".", "Ada Lovelace", "192.0.2.1", "\t", "IPv6:"]
)  # fmt: skip
_ADDRESSISH = st.lists(_TOKENS, max_size=8).map("".join) | st.text(
    st.sampled_from('a@. <>",:;()[]\\bZü例'), max_size=20
)


def _accepts(build: Callable[[], object]) -> bool:
    try:
        build()
    except pydantic.ValidationError:
        return False
    return True


@given(text=_ADDRESSISH)
def test_parsing_never_invents_an_address(text):
    try:
        address = Address(text)
    except pydantic.ValidationError:
        return
    assert address.email in text  # nothing repaired or merged
    assert Address(str(address)) == address  # and it renders back unchanged


@given(email=_ADDRESSISH.filter(bool))  # "" is the null sender, legal in MAIL FROM
def test_every_form_takes_the_same_emails(email):
    accepted = _accepts(lambda: Address(email=email))
    assert _accepts(lambda: Address.model_validate(("X", email))) == accepted
    assert _accepts(lambda: Envelope(sender="", recipients=[email])) == accepted
    assert _accepts(lambda: Envelope(sender=email, recipients=["r@x.org"])) == accepted
    assert _accepts(lambda: msg(envelope_sender=email)) == accepted


_NAME = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters=FORBIDDEN_CHARS),
    max_size=12,
)
_LOCAL = st.text(
    st.characters(categories=("L", "N")) | st.sampled_from(".+-_'!#$%&*/=?^`{|}~"),
    min_size=1,
    max_size=12,
)
_HOST = st.lists(
    st.text(st.sampled_from("abcxyz0189"), min_size=1, max_size=8),
    min_size=1,
    max_size=3,
).map(".".join)
EMAILS = st.builds(lambda local, host: f"{local}@{host}.org", _LOCAL, _HOST)


@given(name=_NAME, email=EMAILS)
def test_any_address_renders_to_a_string_that_parses_back(name, email):
    address = Address(email=email, name=name)
    assert Address(str(address)) == address


# -- a (name, email) pair never swallows a recipient ----------------------------------


def test_pair_of_full_addresses_is_two_recipients():
    message = msg(to=("Tø One <to1@example.com>", "to2@example.org"))
    assert [(a.name, a.email) for a in message.to] == [
        ("Tø One", "to1@example.com"),
        (None, "to2@example.org"),
    ]
    assert msg(to=("a@b.example", "c@d.example")).to == (
        Address(email="a@b.example"),
        Address(email="c@d.example"),
    )


def test_pair_with_a_name_is_one_recipient_and_ambiguity_is_an_error():
    assert msg(to=("Ada", "ada@example.com")).to == (
        Address(email="ada@example.com", name="Ada"),
    )
    with pytest.raises(pydantic.ValidationError):
        msg(to=("X@Y Corp", "c@example.com"))  # not silently one recipient "X@Y Corp"


def _forms(email: str, name: str) -> st.SearchStrategy[str]:
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return st.sampled_from(
        [email, f"<{email}>", f"{quoted} <{email}>", f"Tø One <{email}>"]
    )


ANY_FORM = st.builds(lambda e, n: (e, n), EMAILS, _NAME).flatmap(
    lambda pair: _forms(*pair).map(lambda text: (text, pair[0]))
)


@given(first=ANY_FORM, second=ANY_FORM, field=st.sampled_from(["to", "cc", "bcc"]))
def test_two_addresses_in_any_form_are_two_recipients(first, second, field):
    message = msg(**{field: (first[0], second[0])})
    assert len(getattr(message, field)) == 2
    emails = {a.email for a in message.recipients}
    assert {first[1], second[1]} <= emails


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "report \ud800"},
        {"to": ("Z\udcffe", "z@example.com")},
        {"headers": {"X-Tag": "\udc80"}},
        {"attachments": [Attachment(filename="a.txt", content=b"x")], "text": "\ud83d"},
        {"html": "<p>\udfff</p>"},
    ],
    ids=["subject", "name", "header", "text", "html"],
)
def test_lone_surrogates_are_refused_by_the_model(fields):
    # They cannot be encoded: without this they would fail only at render time.
    with pytest.raises(pydantic.ValidationError, match="surrogate"):
        Message(sender="a@example.com", **{"to": "b@example.com", **fields})


def test_lone_surrogate_in_a_filename_is_refused():
    with pytest.raises(pydantic.ValidationError, match=r"surrogate|unicode"):
        Attachment(filename="r\ud800.pdf", content=b"x")
