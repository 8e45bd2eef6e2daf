"""Review C: a Ctrl-C while ``smtpkit send`` prints a result never loses it.

A result out of the stream but not yet printed was in neither the loop nor
``leftover``: a Ctrl-C landing on the call that printed it dropped its lines,
and the summary counted it anyway.  Here a KeyboardInterrupt is injected at
each Python call made by the loop body in turn (``sys.settrace``; CPython
delivers a real Ctrl-C at such calls), against a real server.
"""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from types import CodeType, FrameType

import pytest

from smtpkit._cli import main, send
from smtpkit._cli._output import Output

from .clirunner import _CLEAN_ENV

pytestmark = pytest.mark.integration

MESSAGES = 3


def _injecting(at: int) -> tuple[object, list[int]]:
    """A tracer raising KeyboardInterrupt at the *at*-th call of the loop body."""
    loop: CodeType = send.run.__code__
    printing = {send._Report.add.__code__, Output.status.__code__}
    add: CodeType = send._Report.add.__code__
    seen = [0]

    def inside_the_loop_body(frame: FrameType) -> bool:
        caller = frame.f_back
        if frame.f_code in printing and caller is not None and caller.f_code is loop:
            return True
        while caller is not None:
            if caller.f_code is add:
                return caller.f_back is not None and caller.f_back.f_code is loop
            caller = caller.f_back
        return False

    def tracer(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and seen[0] < at and inside_the_loop_body(frame):
            seen[0] += 1
            if seen[0] == at:
                raise KeyboardInterrupt

    return tracer, seen


def _send(server, path: Path, at: int) -> tuple[int, str, str, int]:
    stdout, stderr = io.StringIO(), io.StringIO()
    tracer, seen = _injecting(at)
    args = ["send", f"smtp://{server.host}:{server.port}?tls=none&timeout=5"]
    args += ["--jsonl", str(path), "--from", "a@example.com"]
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        code = main(args, environ=_CLEAN_ENV, output=Output(stdout, stderr))
    finally:
        sys.settrace(previous)  # give coverage its tracer back
    return code, stdout.getvalue(), stderr.getvalue(), seen[0]


def test_a_ctrl_c_at_any_call_while_printing_loses_no_result(start_server, tmp_path):
    path = tmp_path / "messages.jsonl"
    lines = [
        {"to": [f"r{n}@example.com"], "subject": f"m{n}", "text": "hi"}
        for n in range(MESSAGES)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    at = 0
    while True:
        at += 1
        server = start_server()
        code, out, err, seen = _send(server, path, at)
        printed = re.findall(r"^message (\d)/3", out, re.MULTILINE)
        if seen < at:  # every call of the loop body was tried
            assert code == 0, err
            assert printed == ["1", "2", "3"]
            break
        assert code == 130, (at, err)
        # Each message once, in order, and the summary counts exactly those.
        assert printed == [str(n) for n in range(1, len(printed) + 1)], (at, out)
        assert f"interrupted: {len(printed)} of {MESSAGES} message(s)" in err, at
        # Whatever reached the server was reported as sent.
        sent = re.findall(r"accepted (r\d@example\.com)", out)
        assert sorted(sent) == sorted(r for m in server.messages for r in m.rcpt_tos)
        assert len(printed) == MESSAGES, (at, out)  # in flight: finished, reported
    assert at > 10  # the loop body was really covered call by call
