"""Operator-facing errors: what a command says, in one line, when it cannot run.

``explain_fatal`` turns a known failure (a configuration error, a broker or Redis that cannot be
reached) into one line that names the fix, and an exit code: 2 for configuration, 1 for a service
that is not there. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BrokerUnavailable(TimeoutError):
    """No Kafka broker answered at the configured bootstrap address in time."""


def _addresses() -> tuple[str, str]:
    try:
        from spillwatch.core_commands import redact_url
        from spillwatch.settings import get_settings

        s = get_settings()
        return s.kafka.bootstrap, redact_url(s.redis.url)
    except Exception:  # noqa: BLE001 - the config itself may be what is broken
        return "the configured address", "the configured URL"


def explain_fatal(exc: BaseException) -> tuple[str | None, int]:
    from spillwatch.settings import ConfigError

    if isinstance(exc, ConfigError):
        return f"config error: {exc}", 2
    broker, redis_url = _addresses()
    fix_broker = (
        f"cannot reach the Kafka broker at {broker}: start the embedded one with `spillwatch stack up` "
        "(or set SPILLWATCH_KAFKA__BOOTSTRAP to yours; `spillwatch replay --local` brings its own)"
    )
    if isinstance(exc, BrokerUnavailable):
        return fix_broker, 1
    try:
        from kafka.errors import KafkaConnectionError, NoBrokersAvailable

        if isinstance(exc, (NoBrokersAvailable, KafkaConnectionError)):
            return fix_broker, 1
    except ImportError:  # pragma: no cover
        pass
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            return (
                f"cannot reach Redis at {redis_url}: start the embedded one with `spillwatch stack up` "
                "(or set SPILLWATCH_REDIS__URL to yours)",
                1,
            )
    except ImportError:  # pragma: no cover
        pass
    return None, 1
