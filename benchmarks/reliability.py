"""Reliability under server faults: every smtp-sink fault mode, tallied, into docs/reliability.md.

Runs the scenarios of tests/faults/scenarios.py (the same ones the fault suite
asserts on) with more messages, twice each: *intermittent* (a router sends about
half the connections to the faulty smtp-sink, the rest to a healthy one) and
*always on* (every connection meets the fault).  For every run it counts, from the
client's results and from smtp-sink's dump of what really arrived: messages tried,
delivered, reported failed (by error class), held by the server, duplicated, and
flagged ``possibly_duplicated``; and it checks the delivery invariant.

    python benchmarks/reliability.py                   # 1,000 messages per run
    python benchmarks/reliability.py --messages 200 --only drop-dot,soft-rcpt
    python benchmarks/reliability.py --json reliability.json --output -

Needs Postfix's smtp-sink (``bash tests/mta/install.sh`` as root installs it) and
the project's environment (smtpkit, pydantic).  Exits 1 when the invariant breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios live with the tests

from tests.faults.scenarios import (  # noqa: E402 - after the path setup
    SCENARIOS,
    Scenario,
    Tally,
    run_scenario,
)
from tests.faults.smtpsink import (  # noqa: E402 - after the path setup
    smtp_sink_path,
    smtp_sink_unavailable_reason,
)

import smtpkit  # noqa: E402 - after the path setup

RERUN = "python benchmarks/reliability.py"
ALWAYS_MESSAGES = 100  # every one of them fails; more adds nothing


def postfix_version() -> str:
    """The installed Postfix package version, if dpkg knows it."""
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "postfix"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def run(
    scenario: Scenario, *, messages: int, pool: int, seed: int, always: bool
) -> Tally:
    """One run in a fresh dump directory."""
    directory = Path(tempfile.mkdtemp(prefix="smtpkit-reliability-"))
    try:
        return run_scenario(
            scenario,
            directory,
            messages=messages,
            pool=pool,
            seed=seed,
            always=always,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- the report -----------------------------------------------------------------------


def _failed_cell(tally: Tally) -> str:
    if not tally.failed:
        return "0"
    parts = [f"{n} {kind}" for kind, n in sorted(tally.failed.items())]
    return f"{tally.failed_total}: " + "; ".join(parts)


def _verdict(tally: Tally) -> str:
    return "holds" if not tally.violations else f"**{len(tally.violations)} broken**"


def _row(label: str, tally: Tally) -> str:
    cells = [
        label,
        str(tally.tried),
        str(tally.delivered),
        _failed_cell(tally),
        str(tally.on_server),
        str(tally.duplicated),
        str(tally.flagged_possibly_duplicated),
        str(tally.delivery_unknown),
        str(tally.attempts),
        f"{tally.connections} / {tally.discarded}",
        _verdict(tally),
        f"{tally.seconds:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


_HEADER = (
    "| run | tried | delivered | reported failed (by error) | on server"
    " | duplicated | flagged possibly_duplicated | delivery_unknown | attempts"
    " | connections opened / discarded | invariant | seconds |\n"
    "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
)

_DUMP_NOTE = {
    "accepted": "",
    "refused": (
        " smtp-sink writes a message to its dump when the final dot arrives,"
        " before it sends the refusal; those copies are counted as refused, not"
        " as on the server."
    ),
    "unknown": (
        " The server has the whole message but never answers the dot: the client"
        " cannot know (RFC 1047), so these copies count as on the server and the"
        " results must say `delivery_unknown`."
    ),
}


PROMISES_START = "<!-- promises: kept by hand, carried over by this script -->"
PROMISES_END = "<!-- /promises -->"


def kept_promises(path: Path) -> str:
    """The promises section of an existing report, markers included, or ``""``.

    It is written by hand (each promise the docs make and the test that proves it),
    so regenerating the figures must not lose it.
    """
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(PROMISES_START), text.find(PROMISES_END)
    if start < 0 or end < start:
        return ""
    return text[start : end + len(PROMISES_END)]


def render(
    runs: list[tuple[Scenario, Tally, Tally | None]],
    *,
    messages: int,
    pool: int,
    seed: int,
    total_seconds: float,
    promises: str = "",
) -> str:
    """The whole of docs/reliability.md; *promises* is the hand-kept promises section."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    broken = sum(bool(t.violations) for _, i, a in runs for t in (i, a) if t)
    verdict = "holds in every run" if not broken else f"broke in {broken} runs"
    lines = [
        "# Reliability under server faults",
        "",
        "What smtpkit reports when the server misbehaves, measured against Postfix's",
        "`smtp-sink` with each of its fault modes switched on.  Every message carries a",
        "unique Message-ID; smtp-sink dumps every transaction it receives, so each",
        "result can be compared with what really reached the server.",
        "",
        "The invariant checked on every run:",
        "",
        "- **nothing is silently dropped**: one result per message, in input order, and",
        "  every result that is not `ok` carries an error;",
        "- **every failure is typed**: the exception class, reply code and failed",
        "  command are exactly those the fault calls for;",
        "- **a reported delivery is real**: an `ok` message is on the server exactly once;",
        "- **a reported failure is real**: a failed message is not on the server, unless",
        "  its error (or an earlier attempt's) has `delivery_unknown=True`;",
        "- **no unflagged duplicate**: a message is on the server more than once only",
        "  when its result has `possibly_duplicated=True`.",
        "",
        f"**Result: the invariant {verdict}.**",
        "",
        *([promises, ""] if promises else []),
        "## How it was run",
        "",
        f"- `Mailer.send_many(..., concurrency={pool})` with",
        f"  `PoolLimits(max_connections={pool}, max_messages_per_connection=10)` and",
        "  `RetryPolicy(attempts=3)` with no waits (`sleep` is a no-op), so every",
        "  transient failure is retried twice; `retry_ambiguous=False` except where noted.",
        f"- **intermittent**: {messages} messages; a small TCP router",
        "  (tests/faults/smtpsink.py `FaultRouter`) sends each new connection to the faulty",
        f"  smtp-sink with probability 0.5 (seed {seed}), else to a healthy one, so retries",
        "  can land on a good connection.  The `-W` delay runs connect straight to one sink",
        "  (its delays are random already).",
        f"- **always on**: {ALWAYS_MESSAGES} messages straight to the faulty sink; every",
        "  message must fail, after 3 attempts when the failure is transient and 1 when not.",
        "- Columns: *on server* counts distinct messages the servers accepted or hold",
        "  without having answered; *duplicated* counts messages held more than once;",
        "  *attempts* sums `result.attempts`.  When a connection fails, the message",
        "  whose reply failed (and any whose data was sent) counts an attempt; messages",
        "  only pipelined behind it move to a fresh connection without one, so",
        "  *attempts* can be lower than the transactions tried; *connections discarded*",
        "  counts every connection lost to the fault.",
        "",
        f"Generated {now} by `{RERUN} --messages {messages} --pool {pool} --seed {seed}`",
        f"in {total_seconds:.0f} s: smtpkit {smtpkit.__version__}, Python"
        f" {platform.python_version()}, Postfix {postfix_version()} smtp-sink,"
        f" {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}.",
        "",
        "## Summary (intermittent runs)",
        "",
        "| fault | smtp-sink options | tried | delivered | failed | duplicated"
        " | flagged | invariant |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for scenario, intermittent, _ in runs:
        lines.append(
            f"| [{scenario.title}](#{scenario.key}) | `{scenario.command_line}` |"
            f" {intermittent.tried} | {intermittent.delivered} |"
            f" {intermittent.failed_total} | {intermittent.duplicated} |"
            f" {intermittent.flagged_possibly_duplicated} | {_verdict(intermittent)} |"
        )
    for scenario, intermittent, always in runs:
        allowed = ", ".join(f"`{e}`" for e in scenario.expected)
        lines += [
            "",
            f'<a id="{scenario.key}"></a>',
            "",
            f"## {scenario.title}",
            "",
            f"`smtp-sink {scenario.command_line}`; failures allowed: {allowed}"
            f" ({'transient, retried' if scenario.transient else 'not retried'})."
            + _DUMP_NOTE[scenario.dumps]
            + (
                f" Command timeout {scenario.timeout} s."
                if scenario.timeout < 10
                else ""
            )
            + (" `retry_ambiguous=True`." if scenario.retry_ambiguous else ""),
            "",
            _HEADER,
        ]
        label = "intermittent" if scenario.share is not None else "random delays"
        if intermittent.routed:
            routed = intermittent.routed
            label += f" ({routed['faulty']}/{routed['faulty'] + routed['healthy']} conns faulty)"
        lines.append(_row(label, intermittent))
        if always is not None:
            lines.append(_row("always on", always))
        for tally in (intermittent, always):
            if tally is not None and tally.violations:
                lines += ["", "Violations (first 10):", ""]
                lines += [f"- {v}" for v in tally.violations[:10]]
    lines += [
        "",
        "## Notes on smtp-sink",
        "",
        "- `-r` and `-f` also switch PIPELINING off, so those modes exercise the",
        "  lockstep path; `-Q`, `-q` and `-A` keep it on (`-p` turns it off).",
        "- `-W` keeps reading pipelined commands while it holds a reply back, so the",
        "  replies come out of order (DATA's `503` overtakes RCPT's `250`).  The client",
        "  notices and fails the transaction with `ProtocolError` instead of pairing",
        "  replies with the wrong commands (the *misordered* mode); the timeout modes",
        "  use `-p`.",
        "- `-A 0` sends its `550` right behind the `354`, before any data: a reply",
        "  nobody asked for, which the client refuses to attribute (`ProtocolError`).",
        "",
        "## Rerun it",
        "",
        "```sh",
        "bash tests/mta/install.sh        # as root: installs postfix (smtp-sink), starts nothing",
        f"{RERUN}     # rewrites docs/reliability.md; exit status 1 if the invariant breaks",
        f"{RERUN} --messages 200 --only drop-dot,421-rcpt --output -   # quick look",
        "python -m pytest tests/faults tests/load -q   # the same scenarios as assertions",
        "```",
        "",
        "Options: `--messages N` (default 1000), `--pool N` (4), `--seed N` (0),",
        "`--only key,key`, `--output PATH` (`-` for stdout), `--json PATH` (raw tallies).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma list of scenario keys")
    parser.add_argument("--output", default=str(ROOT / "docs" / "reliability.md"))
    parser.add_argument("--json", default=None, help="also write the raw tallies here")
    args = parser.parse_args(argv)

    reason = smtp_sink_unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    wanted = {k for k in args.only.split(",") if k}
    unknown = wanted - {s.key for s in SCENARIOS}
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    scenarios = [s for s in SCENARIOS if not wanted or s.key in wanted]
    print(
        f"smtp-sink: {smtp_sink_path()}; {len(scenarios)} fault modes", file=sys.stderr
    )

    start = time.monotonic()
    runs: list[tuple[Scenario, Tally, Tally | None]] = []
    for scenario in scenarios:
        intermittent = run(
            scenario,
            messages=args.messages,
            pool=args.pool,
            seed=args.seed,
            always=False,
        )
        always = None
        if scenario.share is not None:
            always = run(
                scenario,
                messages=ALWAYS_MESSAGES,
                pool=args.pool,
                seed=args.seed,
                always=True,
            )
        runs.append((scenario, intermittent, always))
        flags = [t for t in (intermittent, always) if t is not None and t.violations]
        print(
            f"{scenario.key:18} delivered {intermittent.delivered}/{intermittent.tried}"
            f" failed {intermittent.failed_total} dup {intermittent.duplicated}"
            f" flagged {intermittent.flagged_possibly_duplicated}"
            f" {'INVARIANT BROKEN' if flags else 'ok'} ({intermittent.seconds:.1f} s)",
            file=sys.stderr,
        )
    total = time.monotonic() - start

    report = render(
        runs,
        messages=args.messages,
        pool=args.pool,
        seed=args.seed,
        total_seconds=total,
        promises=kept_promises(Path(args.output)) if args.output != "-" else "",
    )
    if args.output == "-":
        print(report)
    else:
        Path(args.output).write_text(report, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    if args.json:
        data = [
            {
                "scenario": scenario.key,
                "intermittent": intermittent.as_dict(),
                "always": always.as_dict() if always else None,
            }
            for scenario, intermittent, always in runs
        ]
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    broken = any(t.violations for _, i, a in runs for t in (i, a) if t is not None)
    return 1 if broken else 0


if __name__ == "__main__":
    import logging

    logging.getLogger("smtpkit").setLevel(logging.ERROR)  # retries are expected here
    sys.exit(main())
