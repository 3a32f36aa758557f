"""Operator-facing errors: what a command says, in one line, when it cannot run.

``explain_fatal`` turns a known failure (a configuration error, a broker or Redis that cannot be
reached) into one line that names the fix, and an exit code: 2 for configuration, 1 for a service
that is not there. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Literal

STACK_UP = "start the embedded stack with `spillwatch stack up`"


class BrokerUnavailable(TimeoutError):
    """No Kafka broker answered at the configured bootstrap address in time."""


class RedisUnavailable(ConnectionError):
    """Redis did not answer at the configured URL in time."""


class Unreachable(RuntimeError):
    """A command's own one-line explanation of a broker or Redis it needs and cannot reach (exit 1)."""


def _addresses() -> tuple[str, str]:
    try:
        from spillwatch.core_commands import redact_url
        from spillwatch.settings import get_settings

        s = get_settings()
        return s.kafka.bootstrap, redact_url(s.redis.url)
    except Exception:  # noqa: BLE001 - the config itself may be what is broken
        return "the configured address", "the configured URL"


def unreachable_service(exc: BaseException) -> Literal["kafka", "redis"] | None:
    """Which service ``exc`` says is not there: ``"kafka"``, ``"redis"``, or None (another error)."""
    if isinstance(exc, BrokerUnavailable):
        return "kafka"
    if isinstance(exc, RedisUnavailable):
        return "redis"
    try:
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable

        if isinstance(exc, (NoBrokersAvailable, KafkaConnectionError)):
            return "kafka"
        if isinstance(exc, KafkaTimeoutError) and "bootstrap" in str(exc).lower():
            return "kafka"
    except ImportError:  # pragma: no cover
        pass
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
            return "redis"
    except ImportError:  # pragma: no cover
        pass
    return None


def _redis_auth_error(exc: BaseException) -> bool:
    """redis-py's AuthenticationError is a ConnectionError: the fix is the password, not the stack."""
    from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError

    return isinstance(exc, (AuthenticationError, AuthenticationWrongNumberOfArgsError))


def unreachable_message(exc: BaseException, *, local_option: bool = False) -> str | None:
    """One line for a broker or Redis that ``exc`` says is not there, naming the fix; None for any
    other error. ``local_option``: the command has ``--local`` (it can bring its own stack)."""
    service = unreachable_service(exc)
    if service is None:
        return None
    broker, redis_url = _addresses()
    if service == "redis" and _redis_auth_error(exc):
        return f"Redis at {redis_url} refused the credentials: check the password in SPILLWATCH_REDIS__URL"
    if isinstance(exc, (BrokerUnavailable, RedisUnavailable)):
        what = str(exc)  # names the address and how long the command waited
    elif service == "kafka":
        what = f"cannot reach the Kafka broker at {broker}"
    else:
        what = f"cannot reach Redis at {redis_url}"
    if local_option:
        return f"{what}: run with `--local` (it starts its own broker and Redis), or {STACK_UP}"
    variable = "SPILLWATCH_KAFKA__BOOTSTRAP" if service == "kafka" else "SPILLWATCH_REDIS__URL"
    return f"{what}: {STACK_UP} (or set {variable} to yours)"


def explain_fatal(exc: BaseException) -> tuple[str | None, int]:
    from spillwatch.settings import ConfigError

    if isinstance(exc, ConfigError):
        return f"config error: {exc}", 2
    if isinstance(exc, Unreachable):
        return str(exc), 1
    message = unreachable_message(exc)
    return message, 1
