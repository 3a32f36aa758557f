"""Before a command starts its work: the broker and Redis it needs answer, within a bounded wait.

``require(settings, kafka=True, redis=True, wait_s=60)`` returns when both answer, or raises
:class:`~spillwatch.errors.BrokerUnavailable` / :class:`~spillwatch.errors.RedisUnavailable` whose
message says where and how long it waited (``spillwatch.cli.main`` prints it as one line with the fix;
``local_option=True``: the fix named is the command's ``--local``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from spillwatch.errors import BrokerUnavailable, RedisUnavailable, Unreachable, unreachable_message

if TYPE_CHECKING:  # pragma: no cover
    from spillwatch.settings import Settings


def redis_ready(url: str, timeout_s: float = 1.0, *, raise_auth: bool = False) -> bool:
    """True when Redis at ``url`` answers PING. ``raise_auth``: wrong credentials raise (waiting
    would not help) instead of counting as "not ready"."""
    import redis
    from redis.exceptions import AuthenticationError

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except AuthenticationError:
        if raise_auth:
            raise
        return False
    except Exception:  # noqa: BLE001 - connection refused, loading, ...
        return False


def wait_for_redis(url: str, timeout_s: float = 30.0) -> None:
    """Block until Redis answers; RedisUnavailable after ``timeout_s`` seconds (0: one try)."""
    from spillwatch.core_commands import redact_url

    deadline = time.monotonic() + timeout_s
    while True:
        if redis_ready(url, timeout_s=min(3.0, max(0.5, deadline - time.monotonic())), raise_auth=True):
            return
        if time.monotonic() > deadline:
            raise RedisUnavailable(f"Redis at {redact_url(url)} not ready after {timeout_s:.0f}s")
        time.sleep(0.2)


def require(
    settings: Settings, *, kafka: bool = False, redis: bool = False, wait_s: float = 60.0, local_option: bool = False
) -> None:
    """Wait up to ``wait_s`` seconds for each service a command needs (the broker, then Redis).
    ``local_option``: the command has ``--local``; the error then says so (:class:`Unreachable`)."""
    try:
        if kafka:
            from spillwatch.kafka import wait_for_broker

            wait_for_broker(settings.kafka.bootstrap, wait_s)
        if redis:
            wait_for_redis(settings.redis.url, wait_s)
    except (BrokerUnavailable, RedisUnavailable) as exc:
        if not local_option:
            raise
        raise Unreachable(unreachable_message(exc, local_option=True) or str(exc)) from None
