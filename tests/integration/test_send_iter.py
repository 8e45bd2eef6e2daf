"""send_iter stopped early against a real server: what the server received is exactly
what the results say was delivered, once each, and the mailer stays usable (issue 15.6).
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext

import pytest

from smtpkit import Mailer, Message, NotSentError, PoolLimits, SendResult, SendStream

from .faults import FaultHandler, fault_servers, wait_until

MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)\r$", re.MULTILINE | re.IGNORECASE)


@pytest.fixture
def start_fault_server():
    with fault_servers() as start:
        yield start


def message(n: int) -> Message:
    return Message(
        sender="s@example.com",
        to="r@example.com",
        text="hi",
        message_id=f"<m{n}@iter>",
    )


def pulling(count: int, pulled: list[int]) -> Iterator[Message]:
    for n in range(count):
        pulled.append(n)
        yield message(n)


def received_ids(server) -> list[str]:
    ids = []
    for received in server.messages:
        match = MESSAGE_ID.search(received.data)
        assert match is not None
        ids.append(match.group(1).decode())
    return ids


def check_wire(server, pulled: list[int], every: list[SendResult]) -> None:
    """One result per message read, in order; the server holds exactly the
    delivered ones, once each, and receives nothing more after the stop."""
    assert len(every) == len(pulled)
    for n, result in enumerate(every):
        if isinstance(result.error, NotSentError):
            assert result.attempts == 0
        else:
            assert result.ok, result.error
            assert result.message_id == f"<m{n}@iter>"
    delivered = [r.message_id for r in every if r.ok]
    time.sleep(0.2)  # anything still going out would arrive now
    assert sorted(received_ids(server)) == sorted(delivered)
    assert any(isinstance(r.error, NotSentError) for r in every)  # stopped early


def take_all(stream: SendStream, into: list[SendResult]) -> None:
    with stream:
        into.extend(stream)


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smtpkit")]


@pytest.mark.parametrize("how", ["break", "raise", "drop"])
def test_stopping_early_on_the_wire_accounts_for_every_message(
    start_fault_server, config_for, how
):
    server = start_fault_server(handler=FaultHandler(pipelining=True, data_delay=0.01))
    pulled: list[int] = []
    yielded: list[SendResult] = []
    config = config_for(server, pool=PoolLimits(max_connections=2))
    with Mailer(config, sleep=[].append) as mailer:
        stream: SendStream | None = mailer.send_iter(pulling(400, pulled))
        assert stream is not None
        if how == "drop":
            yielded.extend([next(stream), next(stream), next(stream)])
            stream = None
            gc.collect()
            leftover: list[SendResult] = []  # logged only: checked below by count
        else:
            with pytest.raises(ZeroDivisionError) if how == "raise" else nullcontext():
                with stream:
                    for result in stream:
                        yielded.append(result)
                        if len(yielded) == 3:
                            if how == "raise":
                                _ = 1 / 0
                            break
            leftover = stream.leftover
        assert pool_threads() == []
        if how != "drop":
            check_wire(server, pulled, [*yielded, *leftover])
        else:
            time.sleep(0.2)
            ids = received_ids(server)
            assert len(ids) == len(set(ids)) < len(pulled)
        # The mailer and its pool are fine: one more message goes through.
        assert mailer.send(message(9999)).ok
    assert all(r.ok for r in yielded)


def test_a_real_sigint_in_the_loop_stops_the_stream_and_says_so(
    start_fault_server, config_for, caplog
):
    caplog.set_level(logging.WARNING, logger="smtpkit")
    server = start_fault_server(handler=FaultHandler(pipelining=True, data_delay=0.02))
    pulled: list[int] = []
    yielded: list[SendResult] = []
    with Mailer(config_for(server), sleep=[].append) as mailer:
        stream = mailer.send_iter(pulling(1000, pulled), concurrency=2)
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            take_all(stream, yielded)
        timer.join()
        assert pool_threads() == []
        check_wire(server, pulled, [*yielded, *stream.leftover])
        assert mailer.send(message(9999)).ok
    assert yielded  # the interrupt came mid-run
    [record] = [r for r in caplog.records if "send_iter" in r.getMessage()]
    delivered = sum(r.ok for r in [*yielded, *stream.leftover])
    assert record.getMessage().startswith(
        f"send_iter interrupted by KeyboardInterrupt: {delivered} message(s) delivered"
    )


def test_the_stream_reads_no_further_than_its_window(start_fault_server, config_for):
    server = start_fault_server(handler=FaultHandler(pipelining=True, data_delay=0.01))
    pulled: list[int] = []
    yielded: list[SendResult] = []
    with Mailer(config_for(server), sleep=[].append) as mailer:
        with mailer.send_iter(pulling(2000, pulled), concurrency=2) as stream:
            for result in stream:
                yielded.append(result)
                # 2 workers: at most 2 batches of 32 each in flight, plus the
                # rest of one chunk (2 batches) read ahead of them.
                assert len(pulled) - len(yielded) < 2 * 2 * 32 + 2 * 32
                if len(yielded) == 300:
                    break
    every = [*yielded, *stream.leftover]
    assert len(every) == len(pulled) < 2000
    delivered = sorted(r.message_id for r in every if r.ok)
    assert wait_until(lambda: sorted(received_ids(server)) == delivered)
