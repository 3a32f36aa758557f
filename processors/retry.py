"""Retry policies of the stream processors: what holds a record, what gives up on it.

Two kinds of failure, told apart by the error:

* an **outage** (broker or Redis away, timeouts, leader moves, Redis loading/out of memory): the
  record is *held* and retried with backoff for as long as it lasts (``stop_never``). Nothing is
  skipped; the batch stays un-acknowledged, so a stop or a crash meanwhile redelivers it.
* a **fault of the record itself** (the broker refuses it for good: too large, invalid; Redis
  answers a command error such as WRONGTYPE; a bug raised on this input): retried up to
  ``limits.record_attempts`` times, then the caller dead-letters the record and moves on, so one bad
  record never stops a stage.

Backoff: tenacity's exponential backoff with jitter, 0.2 s doubling to at most 5 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, stop_never, wait_exponential_jitter

from spillwatch.logs import get_logger

log = get_logger("processors.retry")

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0

# Redis error replies that describe the server's condition, not the command: wait them out.
_REDIS_TRANSIENT_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "NOREPLICAS")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def send_error_is_permanent(exc: BaseException) -> bool:
    """True when the broker (or the client, before sending) refuses this record for good: retrying
    the same bytes cannot succeed. Connection trouble and timeouts are not permanent."""
    from aiokafka.errors import BrokerResponseError, MessageSizeTooLargeError, RecordTooLargeError

    for e in _chain(exc):
        if isinstance(e, (MessageSizeTooLargeError, RecordTooLargeError)):
            return True
        if isinstance(e, BrokerResponseError):
            return not e.retriable
        if isinstance(e, (TypeError, UnicodeError)):
            return True
    return False


def redis_error_is_outage(exc: BaseException) -> bool:
    """True for Redis being unreachable, slow or temporarily unable to serve (hold the record);
    False for an error reply about the command or the data (WRONGTYPE, ...): a fault of the record."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    for e in _chain(exc):
        if isinstance(e, (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)):
            return True
        if isinstance(e, ResponseError):
            return str(e).upper().startswith(_REDIS_TRANSIENT_REPLIES)
    return False


class Attempts:
    """Counts the failures that are the record's own fault; ``exhausted`` after ``limit`` of them."""

    def __init__(self, limit: int, is_outage: Callable[[BaseException], bool]) -> None:
        self.limit = limit
        self.is_outage = is_outage
        self.faults = 0
        self.outages = 0

    def record(self, exc: BaseException) -> bool:
        """Count ``exc``; True while another try is allowed."""
        if self.is_outage(exc):
            self.outages += 1
            return True
        self.faults += 1
        return self.faults < self.limit


def holding(attempts: Attempts, what: str, **log_context: Any) -> AsyncRetrying:
    """Retry an async step: forever through outages, at most ``attempts.limit`` times for faults of
    the record (then the last error is raised to the caller, which dead-letters the record)."""

    def retry(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is None or isinstance(exc, asyncio.CancelledError):
            return False
        return attempts.record(exc)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        kind = "outage" if exc is not None and attempts.is_outage(exc) else "record fault"
        log.warning(f"{what} failed; retrying", kind=kind, error=repr(exc), retry_in_s=round(wait, 2),
                    faults=attempts.faults, outages=attempts.outages, **log_context)

    return AsyncRetrying(
        retry=retry,
        wait=wait_exponential_jitter(multiplier=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S, jitter=BACKOFF_INITIAL_S),
        stop=stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )
