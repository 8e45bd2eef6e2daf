"""OpenTelemetry spans and metrics for smtpkit (install ``pysmtpkit[otel]``).

::

    from smtpkit.contrib.otel import SMTPTelemetry

    telemetry = SMTPTelemetry()  # the global tracer and meter providers
    mailer = Mailer(config, hooks=telemetry.hooks)
    telemetry.watch(mailer.transport)  # session spans and the pool gauge

There is no OpenTelemetry convention for SMTP yet (open-telemetry/
semantic-conventions#1590), so the names below are smtpkit's own, under
``smtp.``, next to the general ``server.*``, ``error.type`` and
``tls.protocol.version`` attributes.  No address, subject or body is ever
recorded: counts, sizes, codes and the server's name only.

Spans:
    ``smtp send`` (INTERNAL), one per message, from the before_send hook to its
    outcome, retries included; a child of the caller's current span (for
    ``send_many`` and ``send_iter`` too: their workers run in a copy of the
    caller's context).  Attributes: ``smtp.message.size``,
    ``smtp.recipients.count``, ``smtp.recipients.accepted``,
    ``smtp.recipients.refused``, ``smtp.attempts``, ``smtp.reply.code``,
    ``smtp.reply.enhanced_code``, ``error.type``; an ``smtp.retry`` event per
    retry wait.  ``smtp.message.size`` is ``SendEvent.size``: the message as
    rendered, before the header lines of ``before_send`` hooks and a DKIM
    signature are added (the bytes sent are that much larger).

    ``smtp session`` (CLIENT), one per SMTP connection of a watched
    transport, from connect to close: a root span (a pooled session outlives
    the send that opened it).  Attributes: ``server.address``,
    ``server.port``, ``smtp.tls``, ``tls.protocol.version``,
    ``smtp.auth.mechanism``, ``error.type`` when set-up failed.

Metrics:
    ``smtp.client.messages.sent`` and ``smtp.client.messages.failed``
    (counters, ``{message}``; failures carry ``error.type``),
    ``smtp.client.send.duration`` (histogram, seconds, per message),
    ``smtp.client.connections.in_use`` (gauge per watched transport, with
    ``server.address`` and ``server.port``).
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import weakref
from collections.abc import Iterable, Mapping

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
except ImportError as exc:
    msg = (
        "smtpkit.contrib.otel needs OpenTelemetry's API: pip install 'pysmtpkit[otel]'"
    )
    raise ImportError(msg) from exc

from .. import __version__
from .._exceptions import ConfigurationError, SMTPKitError, SMTPReplyError
from .._hooks import Hooks
from .._retry import RetryDetails
from .._send_event import SendEvent
from .._transports._connection import SMTPConnection
from .._transports.base import SendResult
from .._transports.failover import FailoverTransport
from .._transports.smtp import SMTPTransport

__all__ = ["SMTPTelemetry"]

_INSTANCES = itertools.count()  # each SMTPTelemetry's own SendEvent.state keys
_EMPTY_CONTEXT = otel_context.Context()


class SMTPTelemetry:
    """Spans and metrics for mailers and SMTP transports.

    Pass :attr:`hooks` to ``Mailer(hooks=...)`` or ``AsyncMailer(hooks=...)``
    (add your own with ``+``) for the message spans and metrics, and
    :meth:`watch` a mailer's ``SMTPTransport`` for session spans and the
    in-use gauge.  Thread-safe; one instance may serve many mailers.

    Args:
        tracer_provider: Where spans go; the global provider when None.
        meter_provider: Where metrics go; the global provider when None.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        number = next(_INSTANCES)  # two instances on one mailer keep apart
        self._span_key = f"smtpkit.otel.{number}.span"
        self._start_key = f"smtpkit.otel.{number}.start"
        self._tracer = trace.get_tracer(
            "smtpkit", __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter("smtpkit", __version__, meter_provider=meter_provider)
        # Counted here and observed at collection time: an int under a lock
        # costs far less per message than the SDK's per-call aggregation.
        self._counts: collections.Counter[str | None] = collections.Counter()
        self._counts_lock = threading.Lock()
        meter.create_observable_counter(
            "smtp.client.messages.sent",
            callbacks=[self._observe_sent],
            unit="{message}",
            description="Messages some recipient accepted.",
        )
        meter.create_observable_counter(
            "smtp.client.messages.failed",
            callbacks=[self._observe_failed],
            unit="{message}",
            description="Messages no recipient accepted (vetoes included).",
        )
        self._duration = meter.create_histogram(
            "smtp.client.send.duration",
            unit="s",
            description="Time from a message's before_send hooks to its outcome.",
        )
        self._transports: weakref.WeakSet[SMTPTransport] = weakref.WeakSet()
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            "smtp.client.connections.in_use",
            callbacks=[self._in_use],
            unit="{connection}",
            description="Pooled SMTP connections lent out to a send.",
        )
        self.hooks = Hooks(
            before_send=(self._before,),
            after_send=(self._after,),
            on_retry=(self._retry,),
            on_failure=(self._failure,),
        )
        """The hooks that make message spans and metrics."""

    def __repr__(self) -> str:
        return f"<SMTPTelemetry watching {len(self._transports)} transport(s)>"

    def watch(self, transport: object) -> None:
        """Make session spans for *transport* and report its pool's in-use gauge.

        Args:
            transport: An ``SMTPTransport`` (such as ``mailer.transport``), or a
                ``FailoverTransport``/``RoundRobinTransport``: each
                ``SMTPTransport`` among its servers is watched.

        Watching the same transport again changes nothing.

        Raises:
            TypeError: *transport* is neither (other transports have no
                sessions to watch), or a failover transport has no
                ``SMTPTransport`` among its servers.
            ConfigurationError: Another ``SMTPTelemetry`` (or another session
                observer) watches *transport* (or one of its servers) already:
                one transport has one observer, so that no open session span is
                left unended.
        """
        found = _smtp_transports(transport)
        if not found:
            msg = (
                "SMTPTelemetry.watch() takes an SMTPTransport (mailer.transport) "
                "or a FailoverTransport of them, "
                f"not {type(transport).__name__}"
            )
            raise TypeError(msg)
        for smtp in found:  # all checked before any is changed
            observer = smtp.session_observer
            if observer is not None and (
                not isinstance(observer, _SessionSpans)
                or observer.tracer is not self._tracer
            ):
                msg = "this transport is watched by another SMTPTelemetry already"
                raise ConfigurationError(msg)
        for smtp in found:
            if smtp.session_observer is None:
                smtp.session_observer = _SessionSpans(self._tracer)
        with self._lock:
            self._transports.update(found)

    # -- message hooks ----------------------------------------------------------

    def _before(self, event: SendEvent) -> None:
        span = self._tracer.start_span(
            "smtp send",
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "smtp.message.size": event.size,
                "smtp.recipients.count": event.recipient_count,
            },
        )
        event.state[self._span_key] = span
        event.state[self._start_key] = time.perf_counter()

    def _retry(self, event: SendEvent, details: RetryDetails) -> None:
        span = event.state.get(self._span_key)
        if isinstance(span, trace.Span):
            attributes: dict[str, str | int | float] = {
                "smtp.attempt": details.attempt,
                "smtp.retry.wait": details.wait,
                "error.type": type(details.error).__name__,
            }
            attributes.update(_reply_attributes(details.error))
            span.add_event("smtp.retry", attributes)

    def _after(self, event: SendEvent, result: SendResult) -> None:
        attributes: dict[str, str | int] = {
            "smtp.attempts": result.attempts,
            "smtp.recipients.accepted": len(result.accepted),
            "smtp.recipients.refused": len(result.refused),
        }
        if result.reply is not None:
            attributes["smtp.reply.code"] = result.reply.code
            if result.reply.enhanced is not None:
                attributes["smtp.reply.enhanced_code"] = str(result.reply.enhanced)
        with self._counts_lock:
            self._counts[None] += 1
        self._end(event, attributes, error=None)

    def _failure(self, event: SendEvent, error: SMTPKitError) -> None:
        attributes: dict[str, str | int] = {
            "smtp.attempts": getattr(error, "attempts", 0),
            "error.type": type(error).__name__,
        }
        attributes.update(_reply_attributes(error))
        with self._counts_lock:
            self._counts[type(error).__name__] += 1
        self._end(event, attributes, error=error)

    def _end(
        self,
        event: SendEvent,
        attributes: Mapping[str, str | int],
        *,
        error: SMTPKitError | None,
    ) -> None:
        start = event.state.pop(self._start_key, None)
        if isinstance(start, float):
            # As HTTP's request duration does: error.type on failures only, so a
            # delivered message costs the SDK no attribute set to clean and hash.
            self._duration.record(
                time.perf_counter() - start,
                None if error is None else {"error.type": type(error).__name__},
            )
        span = event.state.pop(self._span_key, None)
        if not isinstance(span, trace.Span):
            return  # before_send was not ours to run (an earlier veto)
        span.set_attributes(attributes)
        if error is not None:
            # The type only: an error's text may quote an address.
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        span.end()

    def _observe_sent(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        with self._counts_lock:
            sent = self._counts[None]
        yield metrics.Observation(sent)

    def _observe_failed(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        with self._counts_lock:
            failed = [(k, n) for k, n in self._counts.items() if k is not None]
        for error_type, count in failed:
            yield metrics.Observation(count, {"error.type": error_type})

    def _in_use(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            yield metrics.Observation(
                transport.stats().in_use,
                {
                    "server.address": transport.config.host,
                    "server.port": transport.config.port,
                },
            )


def _smtp_transports(transport: object) -> list[SMTPTransport]:
    """Every ``SMTPTransport`` in *transport*: itself, or a failover's servers."""
    if isinstance(transport, SMTPTransport):
        return [transport]
    if isinstance(transport, FailoverTransport):
        return [
            smtp for inner in transport.transports for smtp in _smtp_transports(inner)
        ]
    return []


class _SessionSpans:
    """A ``SessionObserver`` that makes one span per SMTP session."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def session_started(self, host: str, port: int) -> object:
        return self.tracer.start_span(
            "smtp session",
            context=_EMPTY_CONTEXT,  # a root: pooled sessions outlive their sends
            kind=trace.SpanKind.CLIENT,
            attributes={"server.address": host, "server.port": port},
        )

    def session_ready(self, token: object, conn: SMTPConnection) -> None:
        if not isinstance(token, trace.Span):  # pragma: no cover - our own token
            return
        token.set_attribute("smtp.tls", conn.is_tls)
        version = _tls_version(conn)
        if version is not None:
            token.set_attribute("tls.protocol.version", version)
        if conn.auth_mechanism:
            token.set_attribute("smtp.auth.mechanism", conn.auth_mechanism)

    def session_ended(self, token: object, error: BaseException | None) -> None:
        if not isinstance(token, trace.Span):  # pragma: no cover - our own token
            return
        if error is not None:
            token.set_attribute("error.type", type(error).__name__)
            token.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        token.end()


def _reply_attributes(error: BaseException) -> dict[str, str | int]:
    """The reply code and enhanced code of *error*, when a server said it."""
    if not isinstance(error, SMTPReplyError):
        return {}
    reply = error.reply
    attributes: dict[str, str | int] = {"smtp.reply.code": reply.code}
    if reply.enhanced is not None:
        attributes["smtp.reply.enhanced_code"] = str(reply.enhanced)
    return attributes


def _tls_version(conn: SMTPConnection) -> str | None:
    """``"1.3"`` for a TLS 1.3 session (the convention's form); None in clear."""
    version = getattr(conn.sock, "version", None)
    name = version() if callable(version) and conn.is_tls else None
    return name.removeprefix("TLSv") if isinstance(name, str) else None
