"""Reconnect policy: exponential backoff with jitter (pure, no sleeping here)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial, initial*factor, ...`` capped at ``maximum``, each with +-``jitter`` fraction.

    ``next_delay()`` gives the wait before the next attempt; ``reset()`` after a success.
    """

    initial: float = 1.0
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("invalid backoff parameters")

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        if self.jitter:
            base *= 1 + self.rng.uniform(-self.jitter, self.jitter)
        return min(base, self.maximum)

    def reset(self) -> None:
        self.attempts = 0
