"""Pure retry/backoff policy for page deliveries (no I/O, no sleeping).

The service never sleeps between tries: it asks the policy *when* the next try is due and parks
the page in the Redis retry queue, so a slow or down channel holds no worker and delays nobody
else's page, and a page survives a restart of the service. That is why the small formula lives
here instead of in tenacity: tenacity's wait strategies drive an in-line retry loop around a call,
while a page's retries outlive the process that made the first try (the decision must be a pure
function of the tries made, the page's age and the clock, which Redis carries across restarts).

Backoff is exponential with "equal jitter": the n-th retry waits a random time in
``[base_n / 2, base_n]`` where ``base_n = min(max_s, initial_s * multiplier ** (n - 1))`` — a lower
bound keeps retries from hammering a recovering endpoint, the random half spreads many pages
apart. A page is retried until it is ``max_age_s`` old (measured from when it was queued), the
last try landing at that age; ``max_tries`` optionally caps the number of tries as well. A
paging system has to outlast an outage: with the defaults (1 h, 30 s cap) a page queued during
an outage is delivered within about 30 s of the channel coming back, for an hour.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from alerting.notifiers.base import DeliveryResult


class Decision(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int | None = None
    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    max_age_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_tries is not None and self.max_tries < 1:
            raise ValueError("max_tries must be >= 1 (or None: limited by max_age_s only)")
        if not all(math.isfinite(v) for v in (self.initial_s, self.max_s, self.multiplier, self.max_age_s)):
            raise ValueError("backoff settings must be finite")
        if self.initial_s <= 0 or self.max_s <= 0 or self.multiplier < 1 or self.max_age_s <= 0:
            raise ValueError("initial_s, max_s and max_age_s must be > 0, multiplier >= 1")

    def base_delay(self, tries_done: int) -> float:
        """Upper bound of the wait after ``tries_done`` failed tries (>= 1)."""
        if tries_done < 1:
            raise ValueError("tries_done is 1-based")
        # Cap the exponent so huge try counts cannot overflow a float.
        exp = min(tries_done - 1, 64)
        return min(self.max_s, self.initial_s * self.multiplier**exp)

    def delay(self, tries_done: int, rand: float | None = None, age_s: float | None = None) -> float:
        """Seconds to wait before the next try; ``rand`` in [0, 1] (random when None). With the
        page's ``age_s`` the wait never goes past ``max_age_s``: the last try is made at that age."""
        r = random.random() if rand is None else rand
        if not 0.0 <= r <= 1.0:
            raise ValueError("rand must be in [0, 1]")
        base = self.base_delay(tries_done)
        wait = base / 2 + r * base / 2
        if age_s is not None:
            wait = min(wait, max(0.0, self.max_age_s - age_s))
        return wait

    def decide(self, result: DeliveryResult, tries_done: int, age_s: float = 0.0) -> Decision:
        """What to do after a try of a page queued ``age_s`` ago: it worked, try again later, or
        give up (dead letter: a permanent failure, ``max_tries`` used, or ``max_age_s`` reached)."""
        if result.ok:
            return Decision.SENT
        if not result.retryable:
            return Decision.DEAD
        if self.max_tries is not None and tries_done >= self.max_tries:
            return Decision.DEAD
        if not math.isfinite(age_s) or age_s >= self.max_age_s:
            return Decision.DEAD
        return Decision.RETRY

    def worst_case_total_s(self) -> float:
        """Longest time from the first try to the last (ignoring the tries' own duration)."""
        if self.max_tries is None:
            return self.max_age_s
        return min(self.max_age_s, sum(self.base_delay(n) for n in range(1, self.max_tries)))
