"""The documented call style, checked by mypy (with and without the pydantic plugin)
and pyright in strict mode; never run.  tests/test_typing.py runs the checkers."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from pydantic import SecretStr
from typing_extensions import Unpack, assert_type

from smtpkit import (
    Address,
    AddressLike,
    AsyncMailer,
    Attachment,
    Envelope,
    FailoverConfig,
    FailoverTransport,
    Hooks,
    Mailer,
    Message,
    PoolLimits,
    RateLimit,
    RetryDetails,
    RetryPolicy,
    RoundRobinTransport,
    SendEvent,
    SendResult,
    SendVetoedError,
    ServerStats,
    SMTPConfig,
    SMTPConfigFields,
    SMTPKitError,
    SMTPReply,
    SMTPReplyError,
    SocketFactory,
    TLSMode,
    TokenFetchError,
    TransportError,
    VerifyReport,
    render,
)
from smtpkit.auth import (
    DEFAULT_REFRESH_AHEAD,
    AccessToken,
    CachedTokenProvider,
    PlainAuth,
    XOAuth2Auth,
)
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

# Send hooks: plain typed callables; lists are accepted.
headers_added: list[str] = []


def tag(event: SendEvent) -> dict[str, str]:
    assert_type(event.recipient_count, int)
    assert_type(event.state, dict[str, object])
    return {"X-Campaign": "spring"}


def veto(event: SendEvent) -> None:
    if event.size > 10_000_000:
        raise SendVetoedError("too big")


def after_send(event: SendEvent, result: SendResult) -> None:
    headers_added.append(str(event.message_id))


def on_message_retry(event: SendEvent, details: RetryDetails) -> None:
    assert_type(details.error, TransportError)


def on_failure(event: SendEvent, error: SMTPKitError) -> None:
    assert_type(error, SMTPKitError)


hooks = (
    Hooks(
        before_send=[veto, tag],
        after_send=[after_send],
        on_retry=[on_message_retry],
        on_failure=[on_failure],
    )
    + Hooks()
)
assert_type(hooks, Hooks)
with Mailer(transport=FakeTransport(), hooks=hooks) as hooked:
    assert_type(hooked.send(message), SendResult)
AsyncMailer(transport=FakeTransport(), hooks=hooks)

# DKIM: a signer= on either mailer; any object with sign(bytes) -> bytes fits.
from smtpkit import MessageSigner  # noqa: E402
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

# OAuth2 tokens and proxies: CachedTokenProvider, AccessToken, SocketFactory.


def fetch_token() -> AccessToken:
    return AccessToken(token="t", lifetime=3600)


tokens = CachedTokenProvider(fetch_token, refresh_ahead=DEFAULT_REFRESH_AHEAD)
assert_type(tokens(), str)
tokens.token_refused()
tokens.invalidate()
expiring = AccessToken.expiring_at("t", datetime.now(timezone.utc))
assert_type(expiring.lifetime, float)
oauth = XOAuth2Auth("a@example.com", token_provider=tokens)


def via_proxy(
    host: str, port: int, timeout: float, source_address: tuple[str, int] | None
) -> socket.socket:
    return socket.create_connection((host, port), timeout, source_address)


factory: SocketFactory = via_proxy
proxied = SMTPConfig(
    host="smtp.example.com", socket_factory=via_proxy, source_address="192.0.2.1"
)
fetch_failed: type[TransportError] = TokenFetchError
