"""Review C: unequal settings never share a mailer (tenant B must not send as A).

Keys of unhashable token providers were built from their declared fields only:
two providers differing in a pydantic ``PrivateAttr``, an ``extra="allow"`` field
or an attribute set in ``__post_init__`` got one key, and the second tenant's
backend used the first tenant's mailer and token.  A user's unhashable object
now counts by identity, and a key hit is confirmed with ``==``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from smtpkit import Mailer, SMTPConfig
from smtpkit.auth import XOAuth2Auth
from smtpkit.contrib.django._shared import registry_key, shared_mailer


class PrivateSecret(BaseModel):
    """A provider holding its client secret privately (not a declared field)."""

    tenant: str
    _client_secret: str = PrivateAttr()

    def __init__(self, tenant: str, secret: str) -> None:
        super().__init__(tenant=tenant)
        self._client_secret = secret

    def __call__(self) -> str:
        return f"token-for-{self._client_secret}"


class ExtraFields(BaseModel):
    """A provider whose account is an undeclared (extra) field."""

    model_config = ConfigDict(extra="allow")

    def __call__(self) -> str:
        return f"token-{self.account}"  # type: ignore[attr-defined]  # extra field


@dataclasses.dataclass
class PostInit:
    """A provider whose secret is set in __post_init__, not a field."""

    tenant: str
    path: str = dataclasses.field(repr=False, default="")

    def __post_init__(self) -> None:
        self.secret = f"read from {self.path}"

    def __call__(self) -> str:
        return self.secret


PAIRS: list[tuple[Callable[[], str], Callable[[], str]]] = [
    (PrivateSecret("contoso", "secret-A"), PrivateSecret("contoso", "secret-B")),
    (ExtraFields(account="alice"), ExtraFields(account="bob")),  # type: ignore[call-arg]
]


def _post_init_pair() -> tuple[PostInit, PostInit]:
    a, b = PostInit("contoso", "/a"), PostInit("contoso", "/b")
    b.path = "/a"  # now equal fields, different secrets
    return a, b


PAIRS.append(_post_init_pair())


def config(provider: Callable[[], str]) -> SMTPConfig:
    auth = XOAuth2Auth("shared@contoso.com", token_provider=provider)
    return SMTPConfig(host="smtp.office365.com", port=587, auth=auth)


def shared(values: object) -> Mailer:
    return shared_mailer(values, lambda: Mailer(SMTPConfig(host="h.test")))


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=lambda p: type(p).__name__)
def test_two_tenants_providers_never_share_a_mailer(a, b):
    assert a() != b()
    key_a, key_b = (config(a),), (config(b),)
    assert registry_key(key_a) != registry_key(key_b)
    assert shared(key_a) is not shared(key_b)
    # Equal settings built again around the same provider still share.
    assert shared((config(a),)) is shared(key_a)
    assert shared((config(b),)) is shared(key_b)


class AlwaysSameKey:
    """Hashable, one hash for all, equal only to itself: the registry confirms."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return other is self


class EqRaises:
    """An unhashable value whose __eq__ raises: never shared by mistake."""

    __hash__ = None  # type: ignore[assignment]  # unhashable on purpose

    def __eq__(self, other: object) -> bool:
        msg = "no comparison"
        raise RuntimeError(msg)


def test_a_key_hit_is_confirmed_with_equality(monkeypatch):
    # Force one key for everything: only the == check keeps tenants apart.
    monkeypatch.setattr(
        "smtpkit.contrib.django._shared.registry_key", lambda value: "one key"
    )
    first = shared(("tenant-a",))
    assert shared(("tenant-a",)) is first
    assert shared(("tenant-b",)) is not first
    raising = [EqRaises()]
    assert shared(raising) is shared(raising)  # the same object: no == needed
    assert shared([EqRaises()]) is not shared(raising)
    assert shared((AlwaysSameKey("a"),)) is not shared((AlwaysSameKey("b"),))
