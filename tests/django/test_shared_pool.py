"""One pooled mailer per process per configuration: backends, threads, fork, exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass

import pytest
from django.core.mail import EmailMessage, get_connection
from django.test.utils import override_settings

import smtpkit
from smtpkit.auth import XOAuth2Auth
from smtpkit.contrib.django import EmailBackend, _shared, close_shared_mailers
from smtpkit.contrib.django._shared import registry_key

from ..integration.smtpd import TOKENS, Server, check_password
from . import modes
from .conftest import QuitRecordingHandler

pytestmark = modes.LEGACY


def message(subject: str) -> EmailMessage:
    return EmailMessage(subject, "B", "from@example.com", ["to@example.com"])


def test_backends_with_equal_settings_share_one_mailer(server):
    first, second = EmailBackend(), get_connection()
    assert first.mailer is second.mailer
    assert EmailBackend(pool={"max_connections": 1}).mailer is not first.mailer
    assert EmailBackend(username="u", password="p", use_tls=True).mailer is not (
        EmailBackend(username="u", password="q", use_tls=True).mailer
    )


def test_open_and_close_follow_djangos_contract_without_closing_the_pool(server):
    backend = EmailBackend()
    assert backend.open() is True  # "opened": the caller should close() it
    assert backend.open() is False  # already open
    with get_connection() as other:  # __enter__/__exit__ call open()/close()
        assert other.send_messages([message("during")]) == 1
    backend.close()
    backend.close()  # idempotent
    # Neither close() closed the shared pool: a later send reuses its session.
    assert EmailBackend().send_messages([message("after")]) == 1
    assert {m.session_id for m in server.messages} == {1}
    assert backend.open() is True  # open again after close()


def test_threads_share_one_pool(server):
    limit = 2
    errors: list[BaseException] = []
    mailers = set()

    def work(n: int) -> None:
        try:
            backend = EmailBackend(pool={"max_connections": limit})
            mailers.add(id(backend.mailer))
            for i in range(3):
                assert backend.send_messages([message(f"t{n}-{i}")]) == 1
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(mailers) == 1
    assert len(server.messages) == 24
    # Never more sessions than the pool allows: connections were reused.
    assert len({m.session_id for m in server.messages}) <= limit


def test_close_shared_mailers_closes_the_pool_and_a_new_one_follows(server):
    backend = EmailBackend()
    old = backend.mailer
    assert backend.send_messages([message("one")]) == 1
    close_shared_mailers()
    assert server.handler.commands[-1] == "QUIT"
    with pytest.raises(smtpkit.ClosedError):
        old.send(smtpkit.Message(sender="a@example.com", to="b@example.com", text="x"))
    assert backend.mailer is not old
    assert backend.send_messages([message("two")]) == 1


class SessionQuitHandler(QuitRecordingHandler):
    """Also records which session each QUIT came on."""

    def __init__(self) -> None:
        super().__init__()
        self.quit_sessions: list[int] = []

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.quit_sessions.append(getattr(session, "smtpkit_id", 0))
        return await super().handle_QUIT(server, session, envelope)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_mailer_and_closes_only_it_at_exit():
    # A real process, as under gunicorn --preload: the parent sends, forks; the
    # child sends and ends with sys.exit, so its atexit handlers run; then the
    # parent sends again on its pooled session and exits.
    server = Server(SessionQuitHandler())
    try:
        code = textwrap.dedent(
            f"""
            import os, sys
            import django
            from django.conf import settings
            settings.configure(
                EMAIL_BACKEND="smtpkit.contrib.django.EmailBackend",
                EMAIL_HOST="{server.host}", EMAIL_PORT={server.port},
            )
            django.setup()
            from django.core.mail import get_connection, send_mail
            assert send_mail("parent-1", "B", "f@example.com", ["t@example.com"]) == 1
            parent_mailer = get_connection().mailer
            pid = os.fork()
            if pid == 0:
                assert get_connection().mailer is not parent_mailer
                assert send_mail("child", "B", "f@example.com", ["t@example.com"]) == 1
                sys.exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0, status
            assert get_connection().mailer is parent_mailer
            assert send_mail("parent-2", "B", "f@example.com", ["t@example.com"]) == 1
            """
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    finally:
        server.stop()
    sessions = {
        m.data.split(b"Subject: ")[1].split(b"\r\n")[0]: m.session_id
        for m in server.messages
    }
    assert sessions.keys() == {b"parent-1", b"child", b"parent-2"}
    # The parent's session outlived the child: parent-2 went out on it.
    assert sessions[b"parent-1"] == sessions[b"parent-2"] != sessions[b"child"]
    # The child's exit QUIT its own session only; the parent's exit, its own.
    assert server.handler.quit_sessions == [sessions[b"child"], sessions[b"parent-1"]]


def test_pool_is_closed_at_interpreter_exit(server):
    # A real process: configure Django, send, exit without closing anything.
    code = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure(
            EMAIL_BACKEND="smtpkit.contrib.django.EmailBackend",
            EMAIL_HOST="{server.host}", EMAIL_PORT={server.port},
        )
        django.setup()
        from django.core.mail import send_mail
        assert send_mail("exit", "B", "f@example.com", ["t@example.com"]) == 1
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert len(server.messages) == 1
    assert server.handler.commands[-1] == "QUIT"  # atexit closed the pool


def test_django_settings_changes_pick_another_mailer(server, start_server):
    other = start_server()
    first = EmailBackend().mailer
    with override_settings(EMAIL_PORT=other.port):
        assert get_connection().send_messages([message("other")]) == 1
        assert EmailBackend().mailer is not first
    assert len(other.messages) == 1
    assert server.messages == []


@dataclass
class Tokens:
    """A token provider as people write them: a dataclass (eq=True: unhashable)."""

    tenant: str

    def __call__(self) -> str:
        return TOKENS["alice@example.com"]


class HashRaises:
    """A token provider whose __hash__ raises something other than TypeError."""

    def __hash__(self) -> int:
        raise ValueError("no hash")

    def __call__(self) -> str:
        return TOKENS["alice@example.com"]


@pytest.mark.parametrize("provider", [Tokens("t1"), HashRaises()], ids=type)
@pytest.mark.parametrize("fail_silently", [False, True])
def test_an_unhashable_token_provider_shares_one_mailer(
    start_server, provider, fail_silently
):
    server = start_server(authenticator=check_password, auth_require_tls=False)
    auth = XOAuth2Auth(username="alice@example.com", token_provider=provider)
    options = {"auth": auth, "allow_insecure_auth": True, "timeout": 5.0}
    with override_settings(
        EMAIL_HOST=server.host, EMAIL_PORT=server.port, SMTPKIT=options
    ):
        backend = get_connection(fail_silently=fail_silently)
        assert backend.send_messages([message("one")]) == 1
        assert get_connection().mailer is backend.mailer
        assert get_connection().send_messages([message("two")]) == 1
    assert [m.login for m in server.messages] == ["alice@example.com"] * 2
    assert len({m.session_id for m in server.messages}) == 1  # one pool


def test_registry_keys_compare_by_value_down_to_a_users_objects_by_identity():
    provider = Tokens("t")
    config = smtpkit.SMTPConfig(
        host="h.test",
        auth=XOAuth2Auth(username="u@example.com", token_provider=provider),
    )
    same = smtpkit.SMTPConfig(
        host="h.test",
        auth=XOAuth2Auth(username="u@example.com", token_provider=provider),
    )
    equal = smtpkit.SMTPConfig(
        host="h.test",
        auth=XOAuth2Auth(username="u@example.com", token_provider=Tokens("t")),
    )
    other = smtpkit.SMTPConfig(
        host="h.test",
        auth=XOAuth2Auth(username="u@example.com", token_provider=Tokens("t2")),
    )
    assert registry_key(config) == registry_key(same)
    assert hash(registry_key(config)) == hash(registry_key(same))
    # A user's unhashable object counts by identity: its fields may not be all
    # it holds (review C; see test_shared_keys.py).
    assert registry_key(config) != registry_key(equal)
    assert registry_key(config) != registry_key(other)
    assert registry_key((config, 1)) == registry_key((same, 1))
    assert registry_key([1, [2]]) == registry_key([1, [2]]) != registry_key((1, [2]))
    assert registry_key({"a": [1], "b": 2}) == registry_key({"b": 2, "a": [1]})
    assert registry_key({1, 2}) == registry_key({2, 1}) == frozenset({1, 2})
    assert registry_key(HashRaises()) != registry_key(HashRaises())
    assert registry_key("plain") == "plain"


def test_the_fork_hook_abandons_the_parents_mailers_without_closing_them(server):
    # What os.register_at_fork runs in a child (the subprocess test above runs
    # it for real, outside this process's coverage).
    parent = EmailBackend().mailer
    assert EmailBackend().send_messages([message("before")]) == 1
    _shared._forget_after_fork()
    try:
        assert EmailBackend().mailer is not parent
        assert "QUIT" not in server.handler.commands  # the parent's session lives
    finally:
        parent.close()
