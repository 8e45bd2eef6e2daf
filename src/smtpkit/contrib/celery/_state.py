"""Each message's delivery state in Redis: an atomic state machine per key.

One hash per key, ``{prefix}d:{key}``, changed only by the Lua scripts below, so
two workers holding the same key (a redelivered task, a duplicate) never both send
it.  The states::

    queued ──claim──▶ sending ──finish──▶ delivered | failed | unknown
       ▲                 │
       └──── retrying ◀──┘   (transient failure; only pending recipients)

A ``sending`` key whose lease ran out belongs to a worker that died mid-send: the
message may have been accepted after its final dot, so it becomes ``unknown``
(at-most-once, the default) or is sent again and flagged ``possibly_duplicated``
(at-least-once).  Time comes from the Redis server (``TIME``), never the worker's
clock, so workers on several machines agree.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import redis

__all__ = ["Claim", "Delivery", "DeliveryState", "Outcome", "StateStore"]


class DeliveryState(str, enum.Enum):
    """Where a message stands; ``delivered``, ``failed`` and ``unknown`` are final."""

    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """True for delivered, failed and unknown."""
        return self in _FINAL


_FINAL: Final = frozenset(
    {DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.UNKNOWN}
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What is known about one key, read back from Redis.

    Attributes:
        key: The idempotency key (the Message-ID unless the caller chose one).
        state: The state; None when the key is not known (never queued, or expired).
        attempts: Sending attempts made (claims), over every worker.
        accepted: Recipients the server accepted; never sent to again.
        replies: The last reply per recipient, as ``"250 2.0.0 OK"`` text.
        reason: Why the message failed or its outcome is unknown, else None.
        possibly_duplicated: Sent again after an attempt with an unknown outcome
            (at-least-once only).
    """

    key: str
    state: DeliveryState | None
    attempts: int = 0
    accepted: tuple[str, ...] = ()
    replies: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    possibly_duplicated: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of ``StateStore.claim``: send now, wait, or skip."""

    verdict: str  # "go", "busy", or a DeliveryState value for a final key
    accepted: tuple[str, ...] = ()
    attempts: int = 0
    wait: float = 0.0
    duplicated: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt at a key ended in, for ``StateStore.finish``."""

    key: str
    state: DeliveryState
    accepted: Sequence[str] = ()
    replies: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    duplicating: bool = False
    retry_in: float = 0.0


# KEYS[1]=hash; ARGV: token, lease seconds, at_least_once (0/1), max attempts.
_CLAIM: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'delivered' or st == 'failed' or st == 'unknown' then return {st} end
local dup = redis.call('HGET', KEYS[1], 'dup') or '0'
local taken = false
if st == 'sending' then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner ~= ARGV[1] then
    local lease = tonumber(redis.call('HGET', KEYS[1], 'lease') or '0')
    if lease > now then return {'busy', tostring(lease - now)} end
    if ARGV[3] ~= '1' then
      redis.call('HSET', KEYS[1], 'state', 'unknown', 'expired', '1', 'reason',
        'a worker died or stalled while sending (its lease expired); '
        .. 'the message may have been accepted')
      return {'unknown'}
    end
    dup, taken = '1', true
  end
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if st ~= 'sending' or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  if attempts >= tonumber(ARGV[4]) and taken then
    -- The last attempt died while sending: it may have been accepted.
    redis.call('HSET', KEYS[1], 'state', 'unknown', 'expired', '1', 'reason',
      'the last attempt (' .. attempts .. ') died or stalled while sending '
      .. '(its lease expired); the message may have been accepted')
    return {'unknown'}
  end
  if attempts >= tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'state', 'failed', 'reason',
      'gave up after ' .. attempts .. ' attempts')
    return {'failed'}
  end
  attempts = attempts + 1
end
redis.call('HSET', KEYS[1], 'state', 'sending', 'owner', ARGV[1],
  'lease', tostring(now + tonumber(ARGV[2])), 'attempts', attempts, 'dup', dup)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {'go', redis.call('HGET', KEYS[1], 'done') or '[]', tostring(attempts), dup}
"""

# KEYS[1]=hash; ARGV: token, new state, newly accepted (JSON list), replies (JSON
# object), reason ('' for none), '1' to flag a resend of an unknown outcome,
# seconds until a retrying key's retry task is due.
# Only the owner of the claim may finish it: while sending, or late, after its lease
# ran out and the key was ended 'unknown' for it (the owner knows better).
_FINISH: Final = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'stale' end
local st = redis.call('HGET', KEYS[1], 'state')
local late = st == 'unknown' and redis.call('HGET', KEYS[1], 'expired') == '1'
if st ~= 'sending' and not late then return st end
redis.call('HDEL', KEYS[1], 'expired')
local done = cjson.decode(redis.call('HGET', KEYS[1], 'done') or '[]')
local seen = {}
for _, r in ipairs(done) do seen[r] = true end
for _, r in ipairs(cjson.decode(ARGV[3])) do
  if not seen[r] then table.insert(done, r); seen[r] = true end
end
local replies = cjson.decode(redis.call('HGET', KEYS[1], 'replies') or '{}')
for r, text in pairs(cjson.decode(ARGV[4])) do replies[r] = text end
local encoded_done = '[]'
if #done > 0 then encoded_done = cjson.encode(done) end
local encoded_replies = '{}'
if next(replies) ~= nil then encoded_replies = cjson.encode(replies) end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'done', encoded_done,
  'replies', encoded_replies, 'reason', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease')
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'dup', '1') end
if ARGV[2] == 'retrying' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'due', tostring(tonumber(t[1]) + tonumber(ARGV[7])))
end
return ARGV[2]
"""

# KEYS[1]=hash; ARGV: token, lease seconds.  Extends the owner's lease.
_RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' then return 0 end
redis.call('HSET', KEYS[1], 'lease', tostring(now + tonumber(ARGV[2])))
return 1
"""

# KEYS[1]=hash; ARGV: token, reason.  Gives back a claim whose message was never
# sent (no rate-limit slot, a quota reply before it): the attempt is not counted.
_RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'stale' end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'sending' then return st end  -- released already: the same answer
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '1') - 1
if attempts < 0 then attempts = 0 end
st = 'queued'
if attempts > 0 then st = 'retrying' end
redis.call('HSET', KEYS[1], 'state', st, 'attempts', attempts, 'reason', ARGV[2])
redis.call('HDEL', KEYS[1], 'lease')
return st
"""

# KEYS[1]=hash; ARGV: ttl.  Marks a key queued unless it is known already.
_QUEUE: Final = """
if redis.call('HSETNX', KEYS[1], 'state', 'queued') == 1 then
  redis.call('HSET', KEYS[1], 'attempts', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS[1]=hash; ARGV: grace seconds.  Ends a stale 'sending' key as unknown, flags
# a 'retrying' key whose retry task is overdue by the grace (see StateStore.sweep).
_SWEEP: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'retrying' then
  local due = redis.call('HGET', KEYS[1], 'due')
  if not due or tonumber(due) + tonumber(ARGV[1]) > now then return 0 end
  redis.call('HSET', KEYS[1], 'reason', 'its retry is overdue: the task was '
    .. 'lost (a failed re-publish?); enqueue the message again to send it')
  return 1
end
if st ~= 'sending' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'lease') or '0') > now then return 0 end
redis.call('HSET', KEYS[1], 'state', 'unknown', 'expired', '1', 'reason',
  'a worker died or stalled while sending (found by sweep); '
  .. 'the message may have been accepted')
return 1
"""


class StateStore:
    """The delivery states of one application, in one Redis database.

    Args:
        client: A ``redis.Redis`` client (``decode_responses=False`` or True).
        prefix: Prepended to every Redis key, to share a database.
        ttl: Seconds a key's state is kept after its last change.
    """

    def __init__(
        self, client: redis.Redis, *, prefix: str = "smtpkit:", ttl: int = 7 * 86400
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._queue = client.register_script(_QUEUE)
        self._sweep = client.register_script(_SWEEP)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def _key(self, key: str) -> str:
        return f"{self.prefix}d:{key}"

    def mark_queued(self, keys: Iterable[str], campaign: str | None = None) -> None:
        """Record *keys* as queued (keys already known keep their state)."""
        keys = list(keys)
        self._run([(self._queue, self._key(key), [self.ttl]) for key in keys])
        if campaign is not None and keys:
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(f"{self.prefix}c:{campaign}", *keys)
            pipe.expire(f"{self.prefix}c:{campaign}", self.ttl)
            pipe.execute()

    def _run(self, calls: Sequence[tuple[Any, str, list[Any]]]) -> list[Any]:
        """Run ``(script, key, args)`` calls in one round trip.

        The scripts are idempotent, so a pipeline that met a Redis restarted
        between loading its scripts and running them (``NoScriptError``) is simply
        run again, scripts reloaded.
        """
        from redis.exceptions import NoScriptError  # noqa: PLC0415 - celery extra

        tries = 3
        while True:
            pipe = self.client.pipeline(transaction=False)
            for script, key, args in calls:
                script(keys=[key], args=args, client=pipe)
            try:
                return list(pipe.execute())
            except NoScriptError:
                tries -= 1
                if not tries:
                    raise

    def claim(
        self,
        keys: Sequence[str],
        token: str,
        *,
        lease: float,
        at_least_once: bool,
        attempts: int,
    ) -> list[Claim]:
        """Take *keys* for sending under *token*, each atomically (see the module doc).

        One round trip for all of them; safe to repeat (the same *token* gets the
        same answer), so a reply lost to a Redis restart is simply asked again.
        """
        args: list[str | float] = [token, lease, int(at_least_once), attempts, self.ttl]
        replies = self._run([(self._claim, self._key(key), args) for key in keys])
        return [_claim([_text(v) for v in reply]) for reply in replies]

    def finish(
        self,
        outcomes: Sequence[Outcome],
        token: str,
        *,
        renew: Sequence[str] = (),
        lease: float = 0.0,
    ) -> list[str]:
        """Record the outcomes of the claim *token*; return each state now stored.

        Only the claim's owner may finish it (others get ``"stale"``), and
        finishing twice changes nothing.  An owner whose lease ran out may still
        record its real outcome over the ``unknown`` that the expiry left.  The
        leases of the keys in *renew* (still being sent) are extended by *lease*
        seconds in the same round trip.
        """
        calls: list[tuple[Any, str, list[Any]]] = []
        for outcome in outcomes:
            args: list[str | float] = [
                token,
                outcome.state.value,
                json.dumps(list(outcome.accepted)),
                json.dumps(dict(outcome.replies)),
                outcome.reason or "",
                int(outcome.duplicating),
                outcome.retry_in,
            ]
            calls.append((self._finish, self._key(outcome.key), args))
        calls += [(self._renew, self._key(key), [token, lease]) for key in renew]
        return [_text(v) for v in self._run(calls)][: len(outcomes)]

    def release(self, keys: Sequence[str], token: str, reason: str) -> list[str]:
        """Give back the claims *token* holds on *keys*, unsent and uncounted.

        Each key goes back to ``queued`` (or ``retrying`` after earlier attempts);
        returns each state now stored (``"stale"`` for a claim not held).
        """
        calls = [(self._release, self._key(key), [token, reason]) for key in keys]
        return [_text(v) for v in self._run(calls)]

    def get(self, key: str) -> Delivery:
        """Read what is known about *key*."""
        raw = {
            _text(k): _text(v) for k, v in self.client.hgetall(self._key(key)).items()
        }
        return _delivery(key, raw)

    def report(
        self, keys: Iterable[str] | None = None, *, campaign: str | None = None
    ) -> Counter[str]:
        """Count keys per state (``"missing"`` for unknown keys).

        Give the *keys*, or the *campaign* name they were enqueued under.
        """
        if keys is None:
            members = self.client.smembers(f"{self.prefix}c:{campaign}")
            keys = sorted(_text(m) for m in members)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._key(key), "state")
        return Counter("missing" if s is None else _text(s) for s in pipe.execute())

    def sweep(self, grace: float = 300.0) -> int:
        """End ``sending`` keys whose lease ran out as ``unknown``, flag lost retries.

        A worker that dies mid-send leaves its keys ``sending``; a redelivered task
        resolves them too, but when the task itself is lost (a broker without
        persistence), run this from a periodic task.  A ``retrying`` key whose
        retry task is overdue by *grace* seconds (its re-publish failed) keeps its
        state and gets a reason saying so: enqueueing the message again sends it.
        Returns how many keys were ended or flagged.
        """
        swept = 0
        for name in self.client.scan_iter(match=f"{self.prefix}d:*", count=500):
            swept += int(self._sweep(keys=[name], args=[grace]))
        return swept


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _claim(reply: list[str]) -> Claim:
    if reply[0] == "go":
        return Claim(
            "go",
            accepted=tuple(json.loads(reply[1])),
            attempts=int(reply[2]),
            duplicated=reply[3] == "1",
        )
    if reply[0] == "busy":
        return Claim("busy", wait=float(reply[1]))
    return Claim(reply[0])


def _delivery(key: str, raw: Mapping[str, str]) -> Delivery:
    if "state" not in raw:
        return Delivery(key, None)
    return Delivery(
        key,
        DeliveryState(raw["state"]),
        attempts=int(raw.get("attempts", "0")),
        accepted=tuple(json.loads(raw.get("done", "[]"))),
        replies=json.loads(raw.get("replies", "{}")),
        reason=raw.get("reason") or None,
        possibly_duplicated=raw.get("dup") == "1",
    )
