"""One pooled mailer per process per configuration: backends, threads, fork, exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from django.core.mail import EmailMessage, get_connection
from django.test.utils import override_settings

import smtpkit
from smtpkit.contrib.django import EmailBackend, close_shared_mailers


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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_gets_its_own_mailer(server):
    backend = EmailBackend()
    assert backend.send_messages([message("parent-1")]) == 1
    parent_mailer = backend.mailer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        code = 1
        try:
            fresh = backend.mailer is not parent_mailer
            sent = backend.send_messages([message("child")])
            code = 0 if fresh and sent == 1 else 1
        finally:
            os.write(write, b"%d" % code)
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 10) == b"0"
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's mailer and its pooled session are untouched.
    assert backend.mailer is parent_mailer
    assert "QUIT" not in server.handler.commands
    assert backend.send_messages([message("parent-2")]) == 1
    sessions = {
        m.data.split(b"Subject: ")[1].split(b"\r\n")[0]: m.session_id
        for m in server.messages
    }
    assert sessions[b"parent-1"] == sessions[b"parent-2"] != sessions[b"child"]


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
