"""``MailQueue``: registers the send task on a Celery app, enqueues, reports.

Each worker process builds its own ``Mailer`` and Redis client on first use
(after the fork: a pool is never inherited) and closes them when Celery shuts
the process down (``worker_process_shutdown`` under prefork,
``worker_shutdown`` for the solo and threads pools).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from email.utils import make_msgid
from typing import Any, Final

import redis
from celery import Celery, signals
from celery.exceptions import Reject
from pydantic import ValidationError
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from smtpkit import (
    ConfigurationError,
    Envelope,
    Mailer,
    Message,
    RetryPolicy,
    SMTPConfig,
    Transport,
)

from ._limiter import FleetRateLimit, Limiter
from ._payload import Item, make_item
from ._runner import ChunkOutcome, Settings, send_chunk
from ._state import Delivery, StateStore

__all__ = ["QUEUE_RETRY_POLICY", "MailQueue"]

QUEUE_RETRY_POLICY: Final = RetryPolicy(
    attempts=8, timeout=None, wait_initial=30.0, wait_max=1800.0, wait_jitter=10.0
)
"""Retries through the queue: 30 s, 1 min, 2 min ... up to 30 min, 8 attempts."""

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})
_ROUTING: Final = frozenset({"queue", "exchange", "routing_key", "priority"})
_QUEUES: weakref.WeakSet[MailQueue] = weakref.WeakSet()
_MAILER_RETRY: Final = 30.0  # seconds before a worker tries to build its mailer again
logger = logging.getLogger("smtpkit")

Enqueueable = Message | tuple[Message | bytes, Envelope]


def _redis_client(url: str) -> redis.Redis:
    # A Redis restart or failover must not lose a key: every command is retried
    # for about 30 s (connection refused, reset, still loading the AOF).
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 40),
        retry_on_error=[
            redis.ConnectionError,
            redis.TimeoutError,
            redis.BusyLoadingError,
        ],
        socket_timeout=10.0,
        socket_connect_timeout=2.0,
        health_check_interval=5,
    )


class _Local:
    """One process's mailer and Redis client; rebuilt after a fork."""

    def __init__(self, queue: MailQueue) -> None:
        self.pid = os.getpid()
        self.store = StateStore(
            _redis_client(queue.redis_url), prefix=queue.prefix, ttl=queue.ttl
        )
        self.limiter = (
            None
            if queue.rate_limit is None
            else Limiter(self.store.client, queue.rate_limit, prefix=queue.prefix)
        )
        self._build = queue.build_mailer
        self._mailer: Mailer | None = None
        self._lock = threading.Lock()

    @property
    def mailer(self) -> Mailer:
        with self._lock:
            if self._mailer is None:
                self._mailer = self._build()
            return self._mailer

    def close(self) -> None:
        with self._lock:
            mailer, self._mailer = self._mailer, None
        if mailer is not None:
            mailer.close()
        self.store.client.close()


class MailQueue:
    """Send messages from Celery workers, each key at most once (see the guide).

    Creating it registers the task *name* on *app*: a chunk of messages per task
    (``chunk_size``, so a worker pipelines them on one pooled connection), acked
    late and re-queued when its worker dies.  Give exactly one of *config* and
    *transport*.

    Args:
        app: The Celery application.
        redis_url: Where delivery states (and the rate limit) live; every worker on
            every machine must use the same one.
        config: The SMTP server; each worker process builds a pooled ``Mailer``.
        transport: Builds the transport instead of *config* (called once per
            process).
        retry: Which failures are retried through the queue, how often, and the
            backoff used as Celery's countdown.
        rate_limit: One limit for every worker sharing its ``account``.
        at_least_once: Resend a message whose previous attempt died after its data
            was sent (the result says ``possibly_duplicated``) instead of ending it
            ``unknown``.
        lease: Seconds a worker may hold a key while sending; past it the key counts
            as abandoned.  Longer than one chunk's sending time.
        chunk_size: Messages per task.
        name: The task name.
        prefix: Prefix of every Redis key.
        ttl: Seconds a key's state is kept.
    """

    def __init__(
        self,
        app: Celery,
        *,
        redis_url: str,
        config: SMTPConfig | None = None,
        transport: Callable[[], Transport] | None = None,
        retry: RetryPolicy = QUEUE_RETRY_POLICY,
        rate_limit: FleetRateLimit | None = None,
        at_least_once: bool = False,
        lease: float = 300.0,
        chunk_size: int = 20,
        name: str = "smtpkit.send",
        prefix: str = "smtpkit:",
        ttl: int = 7 * 86400,
    ) -> None:
        if (config is None) == (transport is None):
            msg = "MailQueue needs exactly one of config= and transport="
            raise ConfigurationError(msg)
        if chunk_size < 1 or lease <= 0:
            msg = f"chunk_size must be >= 1 and lease > 0: {chunk_size}, {lease}"
            raise ConfigurationError(msg)
        self.app = app
        self.name = name
        self.redis_url = redis_url
        self.config = config
        self._transport = transport
        self.rate_limit = rate_limit
        self.chunk_size = chunk_size
        self.prefix = prefix
        self.ttl = ttl
        self.settings = Settings(retry=retry, at_least_once=at_least_once, lease=lease)
        if any(q.app is app and q.name == name for q in list(_QUEUES)):
            # Celery would hand back the first queue's task: this queue's
            # messages would go through the first one's server and settings.
            msg = f"a MailQueue named {name!r} exists on this app already: pass name="
            raise ConfigurationError(msg)
        self._local: _Local | None = None
        self._local_lock = threading.Lock()
        self.task = app.task(
            name=name,
            shared=False,  # this app only: not added to every app made later
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            serializer="json",
        )(_task_body(self))
        _QUEUES.add(self)

    @classmethod
    def from_env(
        cls,
        app: Celery | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> MailQueue:
        """The ready-made queue, configured by environment variables only.

        ``SMTPKIT_REDIS_URL`` (required) holds the states; ``SMTPKIT_BROKER_URL``
        is the broker when no *app* is given (default: the Redis URL); the SMTP
        server comes from ``SMTP_URL`` or ``SMTP_HOST``... (``SMTPConfig.from_env``);
        ``SMTPKIT_RATE_ACCOUNT`` with ``SMTPKIT_RATE_PER_SECOND`` and optionally
        ``SMTPKIT_RATE_PER_DAY`` set a ``FleetRateLimit`` (a rate without an account
        is an error); ``SMTPKIT_AT_LEAST_ONCE`` set to ``1``/``true``/``yes``/``on``
        (any case) turns at-least-once on.  Workers can run it as they are:
        ``celery -A smtpkit.contrib.celery.worker worker``.

        Raises:
            ConfigurationError: A variable is missing or malformed.
        """
        env = os.environ if environ is None else environ
        redis_url = env.get("SMTPKIT_REDIS_URL")
        if not redis_url:
            msg = "set SMTPKIT_REDIS_URL (where smtpkit keeps delivery states)"
            raise ConfigurationError(msg)
        if app is None:
            broker = env.get("SMTPKIT_BROKER_URL") or redis_url
            app = Celery("smtpkit", broker=broker, set_as_current=False)
        rate_limit = None
        rate_vars = ("SMTPKIT_RATE_PER_SECOND", "SMTPKIT_RATE_PER_DAY")
        if not env.get("SMTPKIT_RATE_ACCOUNT") and any(env.get(v) for v in rate_vars):
            msg = (
                "SMTPKIT_RATE_PER_* need SMTPKIT_RATE_ACCOUNT (the account they limit)"
            )
            raise ConfigurationError(msg)
        if env.get("SMTPKIT_RATE_ACCOUNT"):
            try:
                rate_limit = FleetRateLimit.model_validate(
                    {
                        "account": env["SMTPKIT_RATE_ACCOUNT"],
                        "per_second": env.get("SMTPKIT_RATE_PER_SECOND", ""),
                        "per_day": env.get("SMTPKIT_RATE_PER_DAY") or None,
                    }
                )
            except ValidationError as exc:
                msg = f"SMTPKIT_RATE_* do not make a rate limit: {_describe(exc)}"
                raise ConfigurationError(msg) from None
        flag = env.get("SMTPKIT_AT_LEAST_ONCE", "").strip().lower()
        if flag not in _TRUE | _FALSE:
            msg = f"SMTPKIT_AT_LEAST_ONCE must be 1/true/yes or 0/false/no: {flag!r}"
            raise ConfigurationError(msg)
        try:
            config = SMTPConfig.from_env(environ=env)
        except ValidationError as exc:
            # The values are left out: SMTP_PASSWORD may be among them.
            msg = f"the SMTP_* variables do not make an SMTPConfig: {_describe(exc)}"
            raise ConfigurationError(msg) from None
        return cls(
            app,
            redis_url=redis_url,
            config=config,
            rate_limit=rate_limit,
            at_least_once=flag in _TRUE,
        )

    def build_mailer(self) -> Mailer:
        """Build this process's mailer: no in-process retries (the queue retries)."""
        never = RetryPolicy.never()
        if self._transport is not None:
            return Mailer(transport=self._transport(), retry=never)
        return Mailer(self.config, retry=never)

    @property
    def local(self) -> _Local:
        """This process's mailer and Redis client, built after any fork."""
        with self._local_lock:
            if self._local is None or self._local.pid != os.getpid():
                self._local = _Local(self)  # a parent's is dropped, never used
            return self._local

    @property
    def store(self) -> StateStore:
        """The delivery states (this process's Redis client)."""
        return self.local.store

    def close(self) -> None:
        """Close this process's mailer and Redis client (done at worker shutdown)."""
        with self._local_lock:
            local, self._local = self._local, None
        if local is not None and local.pid == os.getpid():
            local.close()

    # -- producer side ------------------------------------------------------------

    def items(
        self, messages: Iterable[Enqueueable], *, keys: Iterable[str] | None = None
    ) -> list[Item]:
        """Build task items; a message without ``message_id`` gets one here.

        The key is the Message-ID unless *keys* gives one per message (required for
        raw bytes).
        """
        given = iter(keys) if keys is not None else None
        items: list[Item] = []
        for entry in messages:
            message, envelope = entry if isinstance(entry, tuple) else (entry, None)
            if isinstance(message, Message) and message.message_id is None:
                # The sender's domain, as Mailer does (make_msgid's default asks
                # the resolver for this host's name on every call).
                domain = message.sender.ascii_email.rpartition("@")[2]
                message_id = make_msgid(domain=domain)
                message = message.model_copy(update={"message_id": message_id})
            key = next(given, None) if given is not None else None
            if key is None and given is not None:
                msg = "keys= must give one key per message"
                raise ConfigurationError(msg)
            if key is None:
                if not isinstance(message, Message):
                    msg = "raw bytes need a key: pass keys="
                    raise ConfigurationError(msg)
                key = str(message.message_id)
            items.append(make_item(key, message, envelope))
        return items

    def enqueue(
        self,
        messages: Iterable[Enqueueable],
        *,
        keys: Iterable[str] | None = None,
        campaign: str | None = None,
        **options: Any,
    ) -> list[str]:
        """Queue *messages* in chunks; return their keys.

        Keys are recorded ``queued`` first (already known keys keep their state, so
        enqueueing twice sends nothing twice); *campaign* groups them for
        :meth:`report`.  *options* go to Celery's ``apply_async`` (``queue=`` ...).

        Raises:
            ConfigurationError: Raw bytes without a key, or fewer *keys* than
                messages.
            Exception: Whatever Celery raises when the broker refuses a task; keys
                recorded before stay ``queued``, and enqueueing the same messages
                again is safe.
        """
        items = self.items(messages, keys=keys)
        self.store.mark_queued((i["key"] for i in items), campaign)
        # Retries and requeues go where the first task went (workers started
        # with -Q mail never see the default queue).
        routing = {
            k: v
            for k, v in options.items()
            if k in _ROUTING and isinstance(v, (str, int))
        }
        kwargs = {"routing": routing} if routing else {}
        for start in range(0, len(items), self.chunk_size):
            self.task.apply_async(
                args=(items[start : start + self.chunk_size],),
                kwargs=kwargs,
                **options,
            )
        return [i["key"] for i in items]

    def result(self, key: str) -> Delivery:
        """The state, replies and attempts of *key*."""
        return self.store.get(key)

    def report(
        self, keys: Iterable[str] | None = None, *, campaign: str | None = None
    ) -> Counter[str]:
        """Count keys per state, for *keys* or a *campaign*."""
        if (keys is None) == (campaign is None):
            msg = "report() needs exactly one of keys and campaign="
            raise ConfigurationError(msg)
        return self.store.report(keys, campaign=campaign)

    def sweep(self) -> int:
        """End abandoned keys as ``unknown``, flag lost retries (``StateStore.sweep``).

        A retry is overdue when it has not run a lease after its countdown.
        """
        return self.store.sweep(grace=self.settings.lease)

    # -- worker side ----------------------------------------------------------------

    def run(self, items: list[Item]) -> ChunkOutcome:
        """Send one chunk in this process (the task's body, minus re-queueing)."""
        local = self.local
        return send_chunk(
            items,
            mailer=local.mailer,
            store=local.store,
            settings=self.settings,
            limiter=local.limiter,
        )


def _describe(exc: ValidationError) -> str:
    """What is wrong, field by field, without the (possibly secret) values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def _routing_of(task: Any, routing: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where to publish a requeue: as enqueued, else as this task was delivered."""
    if routing:
        return dict(routing)
    info = getattr(task.request, "delivery_info", None) or {}
    return {k: info[k] for k in ("exchange", "routing_key", "priority") if info.get(k)}


def _task_body(queue: MailQueue) -> Callable[..., dict[str, str]]:
    def send_messages(
        task: Any, items: list[Item], routing: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        try:
            queue.local.mailer  # noqa: B018 - built before any key is claimed
        except Exception as exc:
            # A worker that cannot build its mailer (a bad setting, a failing
            # transport factory) leaves the keys queued and tries again later.
            logger.exception("smtpkit: the worker cannot build its mailer")
            raise task.retry(
                countdown=_MAILER_RETRY, max_retries=None, **_routing_of(task, routing)
            ) from exc
        try:
            outcome = queue.run(items)
        except redis.RedisError as exc:
            # Redis stayed unreachable past the client's retries (about 30 s): put
            # the task back on the broker rather than lose it.  Keys claimed before
            # the error end ``unknown`` once their lease runs out.
            logger.warning("smtpkit: Redis unreachable, task requeued: %s", exc)
            raise Reject(exc, requeue=True) from exc
        options = _routing_of(task, routing)
        kwargs = {"routing": routing} if routing else {}
        try:
            for countdown, later in outcome.later:
                task.apply_async(
                    args=(later,), kwargs=kwargs, countdown=countdown, **options
                )
        except Exception as exc:
            # The broker refused the retry: give this task back instead, so its
            # keys come round again (delivered ones send nothing twice).
            logger.warning("smtpkit: requeue failed, task given back: %s", exc)
            raise Reject(exc, requeue=True) from exc
        return outcome.states

    send_messages.__doc__ = "Send a chunk of serialised messages (smtpkit)."
    return send_messages


def _close_all(**_: object) -> None:
    for queue in list(_QUEUES):
        queue.close()


signals.worker_process_shutdown.connect(_close_all, weak=False)
signals.worker_shutdown.connect(_close_all, weak=False)
