"""A Mailer survives os.fork(): the child opens its own sessions, the parent keeps its."""

from __future__ import annotations

import os

import pytest

from smtpkit import Mailer, Message

from .faults import fault_servers

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # aiosmtpd runs in a thread; Python 3.12+ warns when such a process forks.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


def message(name: str) -> Message:
    return Message(
        sender="sender@example.com",
        to="rcpt@example.com",
        subject=name,
        text="hi",
        message_id=f"<{name}@fork>",
    )


def test_pool_after_fork(start_fault_server, config_for):
    server = start_fault_server()
    handler = server.handler
    with Mailer(config_for(server), sleep=[].append) as mailer:
        mailer.send(message("parent-1"))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            code = 1
            try:
                code = 0 if mailer.send(message("child")).ok else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's pooled session is untouched: no QUIT, and it still works.
        assert "QUIT" not in handler.commands_of(1)
        result = mailer.send(message("parent-2"))
        stats = mailer.transport.stats()
    assert result.ok
    subjects = [
        m.data.split(b"Subject: ")[1].split(b"\r\n")[0] for m in server.messages
    ]
    assert subjects == [b"parent-1", b"child", b"parent-2"]
    parent_1, child, parent_2 = (m.session_id for m in server.messages)
    assert parent_1 == parent_2 == 1
    assert child != parent_1
    assert (stats.created, stats.discarded) == (1, 0)
    assert handler.commands_of(1)[-1] == "QUIT"  # sent by the parent's close()
