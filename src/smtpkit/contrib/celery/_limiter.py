"""One rate limit for every worker on every machine, kept in Redis.

A provider limits the *account* ("100 messages a second, 10,000 a day"), however
many workers send for it.  ``FleetRateLimit`` is a GCRA (generic cell rate
algorithm, a token bucket stored as one timestamp) plus a per-day counter, both
changed by one Lua script so that reserving a slot is atomic across the fleet.

Why a script rather than a library: the limiters for Redis on PyPI answer
"allowed or not" (``limits``' moving window, for instance), which makes workers
poll; the script *reserves* the next free slot and says how long to wait for it,
so N workers space their sends exactly and never overshoot.  Time comes from the
Redis server, so the machines' clocks need not agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import redis

__all__ = ["FleetRateLimit", "Limiter", "Reservation"]

# KEYS[1]=theoretical arrival time, KEYS[2]=per-day counter prefix.
# ARGV: interval (integer microseconds), per-day limit (0: none), longest wait to
# reserve (integer microseconds).  Times are whole microseconds, exact in a Lua
# number (a double holds integers to 2^53), so no step is rounded at any rate.
# Returns {verdict, wait in microseconds}: 1 reserved (send after wait), 0 too far
# ahead (retry after wait), -1 the day's quota is spent (retry at the next UTC day).
_RESERVE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per_day = tonumber(ARGV[2])
local day = math.floor(tonumber(t[1]) / 86400)
local day_key = KEYS[2] .. day
if per_day > 0 then
  local used = tonumber(redis.call('GET', day_key) or '0')
  if used >= per_day then
    return {-1, string.format('%d', (day + 1) * 86400000000 - now)}
  end
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[3]) then return {0, string.format('%d', wait)} end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX',
  math.ceil((wait + interval) / 1000) + 1000)
if per_day > 0 then
  redis.call('INCR', day_key)
  redis.call('EXPIRE', day_key, 2 * 86400)
end
return {1, string.format('%d', wait)}
"""


class FleetRateLimit(BaseModel):
    """The sending limits of one provider account, shared by the whole fleet.

    Attributes:
        account: Names the account in Redis; workers with the same name share it.
        per_second: Messages per second, fleet-wide.
        per_day: Messages per UTC day, fleet-wide, or None.
        max_wait: A worker sleeps for its slot when it is at most this many seconds
            away; further than that (a fleet far ahead of the limit, or the day's
            quota spent) the message goes back to the queue with that countdown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str = Field(min_length=1, pattern=r"^[!-~]+$")
    per_second: float = Field(gt=0)
    per_day: int | None = Field(default=None, gt=0)
    max_wait: float = Field(default=5.0, ge=0)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A slot: ``reserved`` after ``wait`` seconds, or come back after ``wait``."""

    reserved: bool
    wait: float
    quota_spent: bool = False


class Limiter:
    """Reserves send slots of a ``FleetRateLimit`` in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        limit: FleetRateLimit,
        *,
        prefix: str = "smtpkit:",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self._keys = [
            f"{prefix}rl:{limit.account}:tat_us",
            f"{prefix}rl:{limit.account}:day:",
        ]
        self._script = client.register_script(_RESERVE)
        self._sleep = sleep

    def reserve(self) -> Reservation:
        """Reserve the next slot, without waiting for it."""
        limit = self.limit
        args = [
            math.ceil(1e6 / limit.per_second),  # never faster than the limit
            limit.per_day or 0,
            round(limit.max_wait * 1e6),
        ]
        verdict, wait = self._script(keys=self._keys, args=args)
        return Reservation(int(verdict) == 1, int(wait) / 1e6, int(verdict) == -1)

    def acquire(self) -> Reservation:
        """Reserve a slot and sleep until it comes; a far one is returned unslept."""
        slot = self.reserve()
        if slot.reserved and slot.wait > 0:
            self._sleep(slot.wait)
        return slot
