"""LoginGuard: a login the server refused for good is not tried again for a pause."""

from __future__ import annotations

import threading

import pytest

from smtpkit import AuthenticationError, ProviderAdaptation
from smtpkit._exceptions import AuthenticationRequiredError
from smtpkit._transports._login_guard import LoginGuard, refuses_for_good
from smtpkit.testing import reply

QQ = reply(
    "535 Login Fail. Please enter your authorization code to login. More "
    "information in https://service.mail.qq.com/detail/0/53"
)
LOCKED_4XX = reply("451 Requested mail action not taken: too much fail authentication")
BUSY = reply("454 4.7.0 Temporary authentication failure")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _refuse(guard: LoginGuard, refusal: AuthenticationError) -> None:
    with pytest.raises(AuthenticationError), guard.attempt():
        raise refusal


def test_a_lasting_refusal_is_held_for_the_pause_then_tried_again():
    clock = Clock()
    guard = LoginGuard(ProviderAdaptation(auth_refusal_pause=60), clock)
    _refuse(guard, AuthenticationError(QQ, command="AUTH"))
    clock.now = 12.0
    with pytest.raises(AuthenticationError) as held:
        guard.check()
    error = held.value
    assert error.reply == QQ
    assert error.reason == "auth_needs_app_password"
    assert "not tried again" in str(error)
    assert "(12 s ago)" in str(error)
    assert "next login is in 48 s" in str(error)
    assert str(error).endswith(f"hint: {error.hint}")
    with pytest.raises(AuthenticationError), guard.attempt():
        pytest.fail("a held refusal must not log in")  # pragma: no cover - not run
    clock.now = 60.0
    guard.check()  # the pause is over
    with guard.attempt():
        pass  # logged in: nothing is held any more
    clock.now = 61.0
    guard.check()


def test_a_successful_login_clears_a_held_refusal():
    clock = Clock()
    guard = LoginGuard(ProviderAdaptation(auth_refusal_pause=5), clock)
    _refuse(guard, AuthenticationError(QQ, command="AUTH"))
    clock.now = 5.0
    with guard.attempt():
        pass
    _refuse(guard, AuthenticationError(BUSY, command="AUTH"))  # not lasting
    guard.check()


@pytest.mark.parametrize(
    ("error", "lasting"),
    [
        (AuthenticationError(QQ, command="AUTH"), True),
        (AuthenticationError(reply("535 5.7.8 bad credentials"), command="AUTH"), True),
        (AuthenticationError(LOCKED_4XX, command="AUTH"), True),  # 4xx, read as locked
        (AuthenticationError(BUSY, command="AUTH"), False),
        (
            AuthenticationRequiredError(reply("530 5.7.0 auth first"), sender="a@b.c"),
            False,
        ),
        (ValueError("not a refusal"), False),
    ],
)
def test_what_counts_as_refused_for_good(error, lasting):
    assert refuses_for_good(error) is lasting


def test_switched_off_holds_nothing_and_does_not_serialise():
    guard = LoginGuard(ProviderAdaptation(hold_auth_refusal=False))
    _refuse(guard, AuthenticationError(QQ, command="AUTH"))
    guard.check()
    with guard.attempt():
        pass  # a login that succeeds changes nothing either
    assert ProviderAdaptation.off().hold_auth_refusal is False


def test_logins_wait_for_the_first_until_one_succeeded():
    guard = LoginGuard(ProviderAdaptation())
    inside, release = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def refused_login() -> None:
        inside.set()
        release.wait(5)
        raise AuthenticationError(QQ, command="AUTH")

    def first() -> None:
        with pytest.raises(AuthenticationError), guard.attempt():
            refused_login()

    def second() -> None:
        try:
            with guard.attempt():
                outcomes.append("logged in")  # pragma: no cover - must not run
        except AuthenticationError as exc:
            outcomes.append(str(exc))

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(5)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.1)
    assert two.is_alive()  # waiting for the first login's verdict
    release.set()
    one.join(5)
    two.join(5)
    assert len(outcomes) == 1
    assert "not tried again" in outcomes[0]


def test_once_proven_logins_run_side_by_side():
    guard = LoginGuard(ProviderAdaptation())
    with guard.attempt():
        pass
    with guard.attempt(), guard.attempt():  # the gate is no longer taken
        pass
