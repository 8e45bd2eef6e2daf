"""Clients that run as child processes: Postfix's smtp-source and Nodemailer.

``smtp-source`` is timed from outside (wall clock, and the growth of
``RUSAGE_CHILDREN`` for its CPU).  Nodemailer runs in node, whose start-up costs
about 40 ms of CPU and 100 ms of wall time that have nothing to do with sending
mail, so its driver (``nodemailer_driver.js``) times itself from creating the
transport to closing the pool and reports wall and CPU (``process.cpuUsage``,
every thread of the process) as JSON.

Nodemailer is installed with npm into ``benchmarks/.node/`` (git-ignored) on
first use; nothing is installed when the row is not requested.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from clients import (
    RECIPIENT,
    SENDER,
    BenchmarkError,
    SelfTimed,
    Target,
    Workload,
)

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / ".node"
NODE_MODULES = NODE_DIR / "node_modules"
DRIVER = HERE / "nodemailer_driver.js"
NODE = shutil.which("node")
NPM = shutil.which("npm")
SMTP_SOURCE = shutil.which("smtp-source") or (
    "/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None
)

_files: dict[int, Path] = {}


def run_smtp_source(
    target: Target, count: int, work: Workload, connections: int
) -> None:
    """Postfix's C load client: -d reuses each session, -s sessions in parallel.

    It sends its own generated payload of ``-l`` bytes, not ``work.data``.
    """
    assert SMTP_SOURCE is not None  # noqa: S101 - the client is skipped otherwise
    args = [
        SMTP_SOURCE, "-4", "-d", "-s", str(connections), "-m", str(count),
        "-l", str(work.size), "-f", SENDER, "-t", RECIPIENT,
        "-S", "Benchmark message", "-M", "localhost", f"{target.host}:{target.port}",
    ]  # fmt: skip
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        msg = f"smtp-source exited with {done.returncode}: {done.stderr.strip()}"
        raise BenchmarkError(msg)


def nodemailer_problem() -> str | None:
    """Why the Nodemailer row cannot run, after installing it if needed; or None."""
    if NODE is None or NPM is None:
        return "node/npm not installed"
    if not (NODE_MODULES / "nodemailer").is_dir():
        NODE_DIR.mkdir(exist_ok=True)
        done = subprocess.run(
            [NPM, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
             "--no-save", "nodemailer"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return f"npm install nodemailer failed: {done.stderr.strip()[-300:]}"
    return None


def nodemailer_version() -> str | None:
    try:
        meta = json.loads((NODE_MODULES / "nodemailer" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(meta.get("version"))


def _message_file(work: Workload) -> Path:
    """``work.data`` on disk once per size, for the node driver to read."""
    if work.size not in _files:
        directory = Path(tempfile.mkdtemp(prefix="smtpkit-bench-node-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / f"message-{work.size}.eml"
        path.write_bytes(work.data)
        _files[work.size] = path
    return _files[work.size]


def run_nodemailer(
    target: Target, count: int, work: Workload, connections: int
) -> SelfTimed:
    """Nodemailer in pool mode sending the pre-built bytes (``raw``)."""
    assert NODE is not None  # noqa: S101 - the client is skipped otherwise
    options = {
        "host": target.host,
        "port": target.port,
        "count": count,
        "connections": connections,
        "file": str(_message_file(work)),
        "sender": SENDER,
        "recipient": RECIPIENT,
        "ca_file": target.ca_file,
    }
    done = subprocess.run(
        [NODE, str(DRIVER), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
    if done.returncode != 0:
        msg = f"nodemailer exited with {done.returncode}: {done.stderr.strip()[-500:]}"
        raise BenchmarkError(msg)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["sent"] != count:
        msg = f"nodemailer sent {report['sent']} of {count}"
        raise BenchmarkError(msg)
    return float(report["wall"]), float(report["cpu"])
