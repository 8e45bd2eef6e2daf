"""Header injection and long headers, end to end through a real Postfix (issue 8).

The repro subject (a VT before ``Reply-To : attacker@evil.example``) once arrived with
a Reply-To header; now it is refused before any connection is made.  Long unicode
values with every allowed character class arrive with exactly the header fields
smtpkit meant to write, and decode back to what was given.
"""

from __future__ import annotations

import email.policy
import time
from email.message import EmailMessage
from email.utils import getaddresses

import pytest
from pydantic import ValidationError

from smtpkit import (
    Address,
    Attachment,
    InvalidMessageError,
    Message,
    RetryPolicy,
)

from ..unit.test_mime_edges import REPRO, decoded, header_blocks
from .mta import queue_id

pytestmark = [pytest.mark.integration, pytest.mark.postfix]

NEVER = RetryPolicy.never()
# One or more characters of every Unicode category the models accept (everything
# but Cc other than TAB, Cs, Cn, Zl, Zp, and DEL/U+0085): ASCII specials and
# quoting characters, letters of several scripts (RTL too), marks, digits, numbers,
# punctuation, symbols, spaces other than SP, format characters, private use.
EVERY_CLASS = (
    "Aa1 \t\"\\()<>@,;:.[]=?_%*'~!#$&+/^`{|} =?utf-8?q?x?= "
    "éßǅʰ中文字\u0301\u0903\u20dd٣Ⅻ½‿—「」«»¡∑€˜☃🎉\u00a0\u3000"
    "\u200d\ufeff\u00ad\ue000 עברית العربية ελληνικά Ærøskøbing "
)
SUBJECT = (EVERY_CLASS * 3).strip()
NAME = EVERY_CLASS * 2
FILENAME = EVERY_CLASS * 2 + ".pdf"
TOP_FIELDS = [
    "Content-Type", "Date", "From", "MIME-Version", "Message-ID", "Subject", "To",
    "X-Note",
]  # fmt: skip
PART_FIELDS = [
    ["Content-Transfer-Encoding", "Content-Type", "MIME-Version"],
    [
        "Content-Disposition",
        "Content-Transfer-Encoding",
        "Content-Type",
        "MIME-Version",
    ],
]


def test_the_repro_subject_is_refused_before_connecting(make_mailer, postfix, address):
    to = address("victim")
    with pytest.raises(ValidationError):
        Message(sender="billing@example.com", to=to, subject=REPRO, text="x")
    legit = Message(sender="billing@example.com", to=to, subject="invoice", text="x")
    forwarded = EmailMessage(policy=email.policy.compat32)
    forwarded["From"] = "billing@example.com"
    forwarded["To"] = to
    forwarded["Subject"] = REPRO
    forwarded.set_payload("x")
    mark = postfix.log_offset()
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        # The renderer refuses even what a model bug could let through.
        with pytest.raises(InvalidMessageError, match="Subject"):
            mailer.send(legit.model_copy(update={"subject": REPRO}))
        with pytest.raises(InvalidMessageError, match="Subject"):
            mailer.send(forwarded)
        time.sleep(0.3)  # smtpd logs a connection at once
        assert "connect from" not in postfix.log(mark)
        result = mailer.send(legit)
    [delivery] = postfix.wait_for_deliveries(1, recipients=[to])
    postfix.wait_until_idle()
    assert len(postfix.deliveries([to])) == 1
    assert delivery.message()["Reply-To"] is None
    assert " mail=1 rcpt=1 bdat=1 " in postfix.session_summary(queue_id(result))


@pytest.mark.parametrize("smtputf8", [False, True], ids=["7bit", "smtputf8"])
def test_long_unicode_headers_arrive_with_exactly_the_expected_fields(
    make_mailer, postfix, address, smtputf8
):
    to = ("收件人-" if smtputf8 else "") + address("every-class")
    message = Message(
        sender=Address(name=NAME, email="sender@example.com"),
        to=Address(name=NAME[::-1], email=to),
        subject=SUBJECT,
        text="body",
        attachments=[Attachment(filename=FILENAME, content=b"%PDF-1.4")],
        headers={"X-Note": EVERY_CLASS},
    )
    assert message.needs_smtputf8 is smtputf8
    with make_mailer(postfix.config("plain"), retry=NEVER) as mailer:
        mailer.send(message)
    [delivery] = postfix.wait_for_deliveries(1, recipients=[to])

    data = delivery.original.replace(b"\n", b"\r\n")  # pipe(8) stores LF
    assert max(map(len, data.split(b"\r\n"))) <= 998
    assert data.isascii() is not smtputf8
    top, *parts = header_blocks(data)
    assert sorted(name for name, _ in top) == TOP_FIELDS
    assert [sorted(name for name, _ in block) for block in parts] == PART_FIELDS

    fields = dict(top)
    assert [decoded(n) for n, _ in getaddresses([fields["From"]])] == [NAME]
    assert getaddresses([fields["To"]])[0][1] == to
    assert decoded(getaddresses([fields["To"]])[0][0]) == NAME[::-1]
    stored = delivery.message()
    assert stored["Subject"] == SUBJECT
    assert stored["X-Note"] == EVERY_CLASS
    [attachment] = stored.iter_attachments()
    assert attachment["Content-Disposition"].params["filename"] == FILENAME
    assert attachment.get_content() == b"%PDF-1.4"
