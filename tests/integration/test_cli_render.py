"""``smtpkit render``: the .eml is what a send transmits; the preview inlines cid: images."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from pathlib import Path

import pytest

import smtpkit

from .clirunner import Cli, cli_fixture, run_inline  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "logo.png").write_bytes(PNG)
    (tmp_path / "body.txt").write_text("Hello text\n", encoding="utf-8")
    (tmp_path / "body.html").write_text(
        '<html><body><p>Grüße</p><img src="cid:logo.png" alt="logo">'
        "<img src='cid:missing.png'><div style=\"background: url(cid:logo.png)\">"
        "<script>/* the author's own */</script></div></body></html>",
        encoding="utf-8",
    )
    return tmp_path


def message_args(files: Path) -> list[str]:
    return [
        "--from", "me@example.com", "--to", "you@example.com", "--bcc", "hidden@example.com",
        "--subject", "Rendered", "--text", str(files / "body.txt"),
        "--html", str(files / "body.html"), "--inline", str(files / "logo.png"),
    ]  # fmt: skip


def test_render_writes_the_eml_and_a_preview(cli: Cli, files: Path):
    eml, preview = files / "out.eml", files / "out.html"
    run = cli(
        ["render", *message_args(files), "-o", str(eml), "--preview", str(preview)]
    )
    assert run.code == 0, run.both
    data = eml.read_bytes()
    assert b"\r\n" in data
    assert b"hidden@example.com" not in data  # Bcc is never in the bytes
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == "Rendered"
    assert message.get_body(("plain",)).get_content().strip() == "Hello text"
    [image] = [p for p in message.walk() if p.get("Content-ID")]
    assert image.get_content() == PNG

    html = preview.read_text(encoding="utf-8")
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert html.count(data_uri) == 2  # the img and the CSS url()
    assert "cid:logo.png" not in html
    assert "src='cid:missing.png'" in html  # no such part: left as written
    assert "<script>/* the author's own */</script>" in html  # nothing escaped away
    assert "<p>Grüße</p>" in html
    assert html.startswith("<html><body>")  # nothing of ours added


def test_render_to_stdout(cli: Cli, files: Path):
    run = cli(["render", *message_args(files), "-o", "-"])
    assert run.code == 0, run.both
    message = email.message_from_bytes(run.raw_out, policy=email.policy.default)
    assert message["To"] == "you@example.com"
    assert message["Message-ID"].endswith("@example.com>")


def test_render_message_id_domain(cli: Cli, files: Path):
    run = cli(
        [
            "render",
            *message_args(files),
            "-o",
            "-",
            "--message-id-domain",
            "mail.example.org",
        ]
    )
    assert run.code == 0, run.both
    message = email.message_from_bytes(run.raw_out, policy=email.policy.default)
    assert message["Message-ID"].endswith("@mail.example.org>")


def test_render_matches_smtpkit_render(files: Path):
    """The CLI's bytes are smtpkit.render's (compared with the ids made equal)."""
    run = run_inline(["render", *message_args(files), "-o", "-"])
    message = smtpkit.Message(
        sender="me@example.com", to="you@example.com", bcc="hidden@example.com",
        subject="Rendered", text="Hello text\n",
        html=(files / "body.html").read_text(encoding="utf-8"),
        attachments=[smtpkit.Attachment("logo.png", PNG, content_id="logo.png")],
    )  # fmt: skip
    expected = smtpkit.render(message)

    def normal(data: bytes) -> bytes:
        # Boundaries follow the Message-ID and Date: numbered in order instead.
        found: dict[bytes, bytes] = {}

        def number(match: re.Match[bytes]) -> bytes:
            return found.setdefault(match[0], b"B%d" % len(found))

        data = re.sub(rb"={15}[0-9a-f]{24}==(?:\.\d+)?", number, data)
        return re.sub(rb"(Message-ID|Date): [^\r]*", rb"\1: x", data)

    assert normal(run.raw_out) == normal(expected)


def test_preview_needs_an_html_part(cli: Cli, files: Path):
    run = cli(
        [
            "render",
            "--from",
            "me@example.com",
            "--to",
            "you@example.com",
            "--text",
            str(files / "body.txt"),
            "-o",
            str(files / "x.eml"),
            "--preview",
            str(files / "x.html"),
        ]
    )
    assert run.code == 2
    assert "no HTML part" in run.err
    assert not (files / "x.html").exists()


def test_render_cannot_write(cli: Cli, files: Path):
    run = cli(
        ["render", *message_args(files), "-o", str(files / "no" / "such" / "dir.eml")]
    )
    assert run.code == 2
    assert "cannot write" in run.err
