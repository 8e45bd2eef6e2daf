"""The documented call style, checked by mypy (with and without the pydantic plugin)
and pyright in strict mode; never run.  tests/test_typing.py runs the checkers."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import SecretStr
from typing_extensions import Unpack, assert_type

from smtpkit import (
    Address,
    AddressLike,
    Attachment,
    Envelope,
    FailoverConfig,
    FailoverTransport,
    Mailer,
    Message,
    PoolLimits,
    RateLimit,
    RetryDetails,
    RetryPolicy,
    RoundRobinTransport,
    SendResult,
    ServerStats,
    SMTPConfig,
    SMTPConfigFields,
    SMTPReply,
    SMTPReplyError,
    TLSMode,
    TransportError,
    VerifyReport,
    render,
)
from smtpkit.auth import PlainAuth
from smtpkit.testing import FakeTransport, no_wait

# Addresses: every AddressLike form, one or many.
pair: AddressLike = ("Ada", "ada@example.com")
message = Message(
    sender="Shop <shop@example.com>",
    to=["ada@example.com", ("Bob", "bob@example.com"), Address("carol@example.com")],
    cc="dan@example.com",
    bcc=(pair,),
    reply_to=Address(email="help@example.com", name="Help"),
    subject="Hello",
    text="Hi",
    html="<p>Hi</p>",
    attachments=[Attachment("a.txt", b"hi"), Attachment.from_path(__file__)],
    headers={"X-Campaign": "spring"},
    message_id="<1@example.com>",
    date=datetime.now(timezone.utc),
    list_unsubscribe="https://example.com/u",
    list_unsubscribe_one_click=True,
    envelope_sender="bounces@example.com",
)
assert_type(message.sender, Address)
assert_type(message.to, tuple[Address, ...])
assert_type(message.attachments, tuple[Attachment, ...])
assert_type(message.recipients, tuple[Address, ...])
assert_type(message.to_envelope(), Envelope)
assert_type(Message.model_validate({"sender": "a@example.com"}), Message)
assert_type(message.model_copy(update={"subject": "Re: Hello"}), Message)

# Positional first arguments where they read naturally; keywords still work.
assert_type(RateLimit(10), RateLimit)
assert_type(RateLimit(per_second=2.5, burst=3), RateLimit)
assert_type(Envelope("a@example.com", ["b@example.com"]), Envelope)
assert_type(Envelope(sender="", recipients="b@example.com", smtputf8=True), Envelope)
assert_type(
    Attachment(filename="a.txt", content=b"x", content_type="text/plain"), Attachment
)

# Configuration: enum or its value, str or SecretStr.
config = SMTPConfig(
    host="smtp.example.com",
    tls="implicit",
    username="me",
    password="s3cret",
    auth=PlainAuth("me", "s3cret"),
    pool=PoolLimits(max_connections=2, per_connection_rate=1.5),
)
assert_type(config.tls, TLSMode)
assert_type(config.password, SecretStr | None)
SMTPConfig(host="h", tls=TLSMode.NONE, password=SecretStr("x"), username="u", port=None)
assert_type(SMTPConfig.from_url("smtp://h", timeout=5, tls="none"), SMTPConfig)
assert_type(SMTPConfig.from_env(environ={}, host="h"), SMTPConfig)
assert_type(SMTPConfig.for_provider("qq", username="u", password="p"), SMTPConfig)


def make_config(**fields: Unpack[SMTPConfigFields]) -> SMTPConfig:
    """Settings passed through user code keep their types."""
    return SMTPConfig.from_url("smtp://relay.internal", **fields)


make_config(local_hostname="app1.example.com", pipelining=False, chunking=False)

# Retries: the hook sees a TransportError; a reply needs narrowing.
policy = RetryPolicy(attempts=5, retry_codes={421, 451}, no_retry_enhanced="4.7.1")
RetryPolicy(retry_codes=range(450, 453), no_retry_enhanced=["4.7", "4.2.2"])
RetryPolicy(retry_codes=(421,), no_retry_enhanced=frozenset({"4.7.1"}))
RetryPolicy(retry_codes={421: "busy", 451: "later"}.keys())
assert_type(Address(("Ada", "ada@example.com")), Address)
codes: list[int] = []


def on_retry(details: RetryDetails) -> None:
    assert_type(details.error, TransportError)
    if isinstance(details.error, SMTPReplyError):
        assert_type(details.error.reply, SMTPReply)
        codes.append(details.error.reply.code)


fake = FakeTransport()
with Mailer(transport=fake, retry=no_wait(policy), on_retry=on_retry) as mailer:
    assert_type(mailer.send(message), SendResult)
    assert_type(mailer.send_many([message]), list[SendResult])

# Rendering and verify(): the public shapes the command line codes against.
assert_type(render(message), bytes)
assert_type(render(message, message_id_domain="mail.example.com"), bytes)
assert_type(message.as_bytes(), bytes)
verified = Mailer(transport=FakeTransport()).verify()
assert_type(verified, VerifyReport)
assert_type(verified.as_dict(), dict[str, object])
assert_type(verified.timings, tuple[tuple[str, float], ...])
assert_type(verified.certificate_expires, datetime | None)
assert_type(verified.size_limit, int | None)

# DKIM: a signer= on either mailer; any object with sign(bytes) -> bytes fits.
from smtpkit import AsyncMailer, MessageSigner  # noqa: E402
from smtpkit.contrib.dkim import Algorithm, DKIMSigner  # noqa: E402

dkim_signer = DKIMSigner.from_pem_file("dkim.key", domain="example.com", selector="s1")
assert_type(dkim_signer.algorithm, Algorithm)
assert_type(dkim_signer.sign(b"From: a@example.com\r\n\r\n"), bytes)
signer_protocol: MessageSigner = dkim_signer
Mailer(transport=FakeTransport(), signer=dkim_signer)
AsyncMailer(transport=FakeTransport(), signer=signer_protocol)
# Failover: configs or transports, a URL, or a model; results name their server.
failover = FailoverTransport([config, FakeTransport()], cooldown=30.0)
assert_type(failover.stats(), tuple[ServerStats, ...])
assert_type(
    FailoverTransport.from_url("failover(smtp://a smtp://b)"), FailoverTransport
)
robin = RoundRobinTransport([config], names=["relay"])
assert_type(FailoverConfig(servers=[config], strategy="roundrobin"), FailoverConfig)
assert_type(
    FailoverTransport.from_config(FailoverConfig(servers=[config])), FailoverTransport
)
with Mailer(transport=robin) as failover_mailer:
    assert_type(failover_mailer.send(message).server, str | None)
