"""SMTPConfig's socket_factory and source_address: hidden from reprs, validated.

A proxy client usually holds its URL with the proxy's credentials, so a
``socket_factory`` stays out of ``repr``, ``str`` and dumps; ``source_address``
must be an IP address, and an invalid one is not quoted (a URL pasted there).
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import socket

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit import Mailer, SMTPConfig

URL = "socks5://relay:S3cretProxyPw@127.0.0.1:1080"


@dataclasses.dataclass
class Socks:
    url: str

    def __call__(
        self, host: str, port: int, timeout: float, source: tuple[str, int] | None
    ) -> socket.socket:
        raise NotImplementedError  # pragma: no cover - never connects here


def via(
    url: str, host: str, port: int, timeout: float, source: tuple[str, int] | None
) -> socket.socket:
    raise NotImplementedError  # pragma: no cover - never connects here


@pytest.mark.parametrize("factory", [Socks(URL), functools.partial(via, URL)])
def test_the_factory_is_not_shown(factory):
    config = SMTPConfig(host="smtp.example.com", socket_factory=factory)
    for text in (
        repr(config),
        str(config),
        config.model_dump_json(),
        repr(config.model_dump()),
        repr(Mailer(config)),
    ):
        assert "S3cretProxyPw" not in text
    assert config.socket_factory is factory


def test_the_factory_survives_copies_and_pickles():
    factory = Socks(URL)
    config = SMTPConfig(host="smtp.example.com", socket_factory=factory)
    assert config.model_copy(update={"port": 2525}).socket_factory is factory
    assert pickle.loads(pickle.dumps(config)).socket_factory == factory  # noqa: S301
    from_url = SMTPConfig.from_url("smtp://smtp.example.com", socket_factory=factory)
    assert from_url.socket_factory is factory


@pytest.mark.parametrize(
    ("given_", "stored"),
    [
        ("192.0.2.10", ("192.0.2.10", 0)),
        (("192.0.2.10", 2525), ("192.0.2.10", 2525)),
        ("::1", ("::1", 0)),
        ("fe80::1%lo", ("fe80::1%lo", 0)),
        (None, None),
    ],
)
def test_source_address_accepts_ip_addresses(given_, stored):
    config = SMTPConfig(host="smtp.example.com", source_address=given_)
    assert config.source_address == stored


@pytest.mark.parametrize(
    "bad",
    [
        "not an address",
        "127.0.0.1:2525",
        "localhost",
        "",
        ("127.0.0.1", 65536),
        ("127.0.0.1", -1),
        URL,
    ],
)
def test_source_address_rejects_the_rest_without_quoting_it(bad):
    with pytest.raises(pydantic.ValidationError, match="source_address") as info:
        SMTPConfig(host="smtp.example.com", source_address=bad)
    assert "S3cretProxyPw" not in str(info.value)
    assert "S3cretProxyPw" not in repr(info.value.errors())


@given(st.text(max_size=40))
def test_any_text_is_an_ip_address_or_a_validation_error(text):
    try:
        config = SMTPConfig(host="smtp.example.com", source_address=text)
    except pydantic.ValidationError:
        return
    assert config.source_address == (text, 0)  # an IP address, kept as given
