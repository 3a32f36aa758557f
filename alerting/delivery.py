"""Pure retry/backoff policy for page deliveries (no I/O, no sleeping).

The service never sleeps between tries: it asks the policy *when* the next try is due and parks
the page in the Redis retry queue, so a slow or down channel holds no worker and delays nobody
else's page. (tenacity's wait strategies assume an in-line blocking retry loop, so the small
formula lives here, where it can be tested exhaustively.)

Backoff is exponential with "equal jitter": the n-th retry waits a random time in
``[base_n / 2, base_n]`` where ``base_n = min(max_s, initial_s * multiplier ** (n - 1))`` — a lower
bound keeps retries from hammering a recovering endpoint, the random half spreads many pages
apart.
"""

from __future__ import annotations

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
    max_tries: int = 8
    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        if self.initial_s <= 0 or self.max_s <= 0 or self.multiplier < 1:
            raise ValueError("initial_s and max_s must be > 0, multiplier >= 1")

    def base_delay(self, tries_done: int) -> float:
        """Upper bound of the wait after ``tries_done`` failed tries (>= 1)."""
        if tries_done < 1:
            raise ValueError("tries_done is 1-based")
        # Cap the exponent so huge try counts cannot overflow a float.
        exp = min(tries_done - 1, 64)
        return min(self.max_s, self.initial_s * self.multiplier**exp)

    def delay(self, tries_done: int, rand: float | None = None) -> float:
        """Seconds to wait before the next try; ``rand`` in [0, 1) (random when None)."""
        r = random.random() if rand is None else rand
        if not 0.0 <= r <= 1.0:
            raise ValueError("rand must be in [0, 1]")
        base = self.base_delay(tries_done)
        return base / 2 + r * base / 2

    def decide(self, result: DeliveryResult, tries_done: int) -> Decision:
        """What to do after a try: it worked, try again later, or give up (dead letter)."""
        if result.ok:
            return Decision.SENT
        if result.retryable and tries_done < self.max_tries:
            return Decision.RETRY
        return Decision.DEAD

    def worst_case_total_s(self) -> float:
        """Longest time from the first try to the last (ignoring the tries' own duration)."""
        return sum(self.base_delay(n) for n in range(1, self.max_tries))
