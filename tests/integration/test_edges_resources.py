"""Pool slots, sockets and results survive interrupts, hung servers, high file
descriptors and close() in the middle of a bulk send (issue 8, items 11-12, 18-21)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from smtpkit import (
    ClosedError,
    Mailer,
    Message,
    SendManyAbortedError,
    SMTPConnection,
)

from .faults import client_sockets, wait_until
from .rawserver import RawConn, RawServer
from .scriptsmtp import NEVER, TWICE, Script, accept, config, message
from .smtpd import RecordingHandler

pytestmark = pytest.mark.integration


# -- 18. liveness checks work for any file descriptor number ----------------------------


@pytest.fixture
def high_fds() -> Iterator[None]:
    """Hold 1,100 descriptors open, so every new socket is numbered above 1023."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)


def test_pooled_connection_is_reused_with_descriptors_above_1023(
    high_fds, start_server, config_for
):
    server = start_server()
    with Mailer(config_for(server), retry=NEVER) as mailer:
        for n in range(3):
            mailer.send(message(n))
        stats = mailer.transport.stats()
    assert stats.created == 1  # select() would have judged it dead every time
    assert stats.discarded == 0
    assert len(server.messages) == 3


# -- 19. an interrupt anywhere between acquire and release gives the slot back ----------


def interrupt_after(seconds: float) -> threading.Timer:
    """Deliver a real SIGINT (Ctrl-C) to the main thread after *seconds*."""
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


def stalls_once(verb: str) -> Callable[[int, str], bool]:
    """Stall *verb* in the first session that sees it, never again."""
    seen: list[int] = []

    def stall(session: int, command: str) -> bool:
        if command == verb and not seen:
            seen.append(session)
            return True
        return False

    return stall


POINTS = {
    # where the interrupt lands: (stalled verb, pool settings, messages before)
    "idle NOOP check": ("NOOP", {"check_after_idle": 0.0}, 1),
    "pacing": (None, {"per_connection_rate": 0.2}, 1),
    "greeting": ("connect", {}, 0),
    "EHLO": ("EHLO", {}, 0),
    "MAIL reply": ("MAIL", {}, 0),
    "final reply": (".", {}, 0),
}


def stall_final_reply(conn: RawConn, number: int) -> bool:
    conn.read_data()
    conn.wait_closed()
    return False


@pytest.mark.parametrize("point", list(POINTS))
def test_interrupt_between_acquire_and_release_frees_slot_and_socket(point):
    verb, pool, before = POINTS[point]
    script = Script(pipelining=False, stall=stalls_once(verb) if verb else None)
    if verb == ".":
        script.data = [stall_final_reply]
    limits = {"max_connections": 1, "acquire_timeout": 0.5, **pool}
    with RawServer(script) as server:
        with Mailer(config(server, pool=limits), retry=NEVER) as mailer:
            for n in range(before):
                mailer.send(message(n))
            timer = interrupt_after(0.3)
            try:
                with pytest.raises(KeyboardInterrupt):
                    mailer.send(message(99))  # the interrupt must land inside it
            finally:
                timer.cancel()
            stats = mailer.transport.stats()
            assert (stats.in_use, stats.open) == (0, 0), point
            assert wait_until(lambda: client_sockets(server.port) == 0), point
            # The slot came back: the next send is not starved (PoolTimeoutError).
            result = mailer.send(message(100))
    assert result.ok


def test_interrupt_during_close_still_closes_every_socket():
    script = Script(stall=lambda session, verb: verb == "QUIT")
    with RawServer(script) as server:
        mailer = Mailer(config(server, timeout=30.0), retry=NEVER)
        mailer.send_many([message(n) for n in range(4)], concurrency=4)
        assert mailer.transport.stats().idle >= 1
        timer = interrupt_after(0.3)
        try:
            with pytest.raises(KeyboardInterrupt):
                mailer.close()
        finally:
            timer.cancel()
        assert client_sockets(server.port) == 0


# -- 20. closing a pool of hung sessions takes one deadline, not one per session ---------


def slow_accept(conn: RawConn, number: int) -> bool:
    time.sleep(0.3)  # keeps the four sends overlapping, so four sessions open
    return accept(conn, number)


def test_close_with_hung_sessions_shares_one_deadline():
    script = Script(stall=lambda session, verb: verb == "QUIT")
    script.data = [slow_accept] * 4
    with RawServer(script) as server:
        mailer = Mailer(config(server, timeout=1.0), retry=NEVER)
        mailer.send_many([message(n) for n in range(4)], concurrency=4)
        assert mailer.transport.stats().idle == 4
        started = time.monotonic()
        mailer.close()
        took = time.monotonic() - started
        assert client_sockets(server.port) == 0
    assert took < 2.0  # one 1 s deadline for all four, not 1 s each


# -- 21. a stale pooled TLS session whose first write fails is replaced for free ---------


def reset_when_idle(conn: RawConn, number: int) -> bool:
    accept(conn, number)
    time.sleep(0.1)
    conn.reset()  # RST on the idle TLS session: the next write fails
    return False


@pytest.fixture
def blind_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every pooled session look alive, so the first write meets the dead one."""
    monkeypatch.setattr(SMTPConnection, "is_alive", lambda self: True)
    monkeypatch.setattr(
        SMTPConnection, "check_quiet", lambda self, step: None, raising=False
    )


def test_stale_tls_session_failing_on_first_write_is_replaced_free(
    blind_liveness, server_tls_context, ca_file
):
    script = Script(tls=server_tls_context, data=[reset_when_idle])
    with RawServer(script) as server:
        cfg = config(server, tls="implicit", ca_file=ca_file)
        with Mailer(cfg, retry=NEVER) as mailer:
            mailer.send(message(0))
            time.sleep(0.3)
            result = mailer.send(message(1))
    assert result.ok
    assert result.attempts == 1
    assert script.sessions == 2
    assert len(script.received) == 2


# -- 11 and 12 against a real server -------------------------------------------------------


def test_generator_failing_at_row_501_reports_the_500_the_server_has(
    start_server, config_for
):
    server = start_server(pipelining=True)

    def rows() -> Iterator[Message]:
        for n in range(1001):
            if n == 501:
                raise ValueError("row 501 is broken")
            yield message(n)

    with Mailer(config_for(server), retry=NEVER) as mailer:
        with pytest.raises(SendManyAbortedError) as info:
            mailer.send_many(rows())
    results = info.value.results
    assert len(results) == 501
    assert all(r.ok for r in results)
    received = sorted(m.rcpt_tos[0] for m in server.messages)
    assert received == sorted(r.accepted[0] for r in results)


class CloseAfter(RecordingHandler):
    """Calls *on_message* (from the server thread) when message *count* arrives."""

    def __init__(self, count: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.count = count
        self.on_message: Callable[[], None] = lambda: None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) == self.count:
            self.on_message()
        return reply


def test_close_during_send_many_never_marks_delivered_messages_failed(
    start_server, config_for
):
    handler = CloseAfter(7, pipelining=True)
    server = start_server(handler=handler)
    cfg = config_for(
        server, pool={"max_connections": 2, "max_messages_per_connection": 5}
    )
    mailer = Mailer(cfg, retry=TWICE)
    handler.on_message = mailer.close
    results = mailer.send_many([message(n) for n in range(40)], concurrency=2)
    on_server = {m.rcpt_tos[0] for m in server.messages}
    delivered = {r.envelope.recipients[0] for r in results if r.ok}
    assert delivered == on_server  # every message the server has is reported sent
    failed = [r for r in results if not r.ok]
    assert failed  # close() stopped the rest
    assert all(isinstance(r.error, ClosedError) for r in failed)
    assert len(results) == 40


# Python runs signal handlers at the next bytecode boundary, so an interrupt can land
# anywhere; these raise one on entry to each function in the acquire-release window.
WINDOW = [
    ("_expired", "_pool.py", True),
    ("_check", "_pool.py", True),
    ("_open_new", "_pool.py", False),
    ("_take_idle_or_reserve", "_pool.py", True),
    ("_run", "smtp.py", False),
    ("__init__", "_session.py", False),
    ("_copy_error", "smtp.py", False),
    ("_error_for", "smtp.py", False),
]


def interrupt_on_entry(function: str, filename: str) -> object:
    """Install the tracer; return the one it replaces (coverage's, when measuring)."""
    previous = sys.gettrace()

    def trace(frame, event, arg):
        code = frame.f_code
        if (
            event == "call"
            and code.co_name == function
            and code.co_filename.endswith(filename)
        ):
            sys.settrace(previous)
            raise KeyboardInterrupt

    sys.settrace(trace)
    return previous


@pytest.mark.parametrize(("function", "filename", "warm"), WINDOW)
def test_interrupt_at_any_step_of_the_window_frees_the_slot(function, filename, warm):
    script = Script(
        replies={"MAIL": [b"421 4.3.2 bye\r\n"]}
        if function.endswith(("_copy_error", "_error_for"))
        else {}
    )
    limits = {"max_connections": 1, "acquire_timeout": 0.5}
    with RawServer(script) as server:
        with Mailer(config(server, pool=limits), retry=NEVER) as mailer:
            if warm:
                mailer.send(message(0))
            previous = interrupt_on_entry(function, filename)
            try:
                with pytest.raises(KeyboardInterrupt):
                    mailer.send(message(1))
            finally:
                sys.settrace(previous)  # give coverage its tracer back
            stats = mailer.transport.stats()
            assert stats.in_use == 0
            assert client_sockets(server.port) == stats.idle  # nothing leaked
            assert mailer.send(message(2)).ok  # no PoolTimeoutError: the slot is back


def test_a_fresh_session_with_a_stray_reply_is_replaced_free():
    class DoubleEhlo(Script):
        """The first session answers EHLO twice; later ones are correct."""

        def __call__(self, conn: RawConn) -> None:
            if self.sessions == 0:
                send = conn.send

                def doubled(data: bytes) -> None:
                    send(
                        data + b"250 again\r\n"
                        if data.startswith(b"250-edge")
                        else data
                    )

                conn.send = doubled  # type: ignore[method-assign]
            super().__call__(conn)

    script = DoubleEhlo()
    with RawServer(script) as server, Mailer(config(server), retry=NEVER) as mailer:
        result = mailer.send(message(1))
    assert result.ok
    assert result.attempts == 1
    assert script.sessions == 2
