"""The ``integration`` marker, right by construction (a pytest plugin; tests/conftest.py loads it).

* Every test that uses the session's local stack (the ``local_stack`` fixture, directly or through
  ``stack_settings``, ``redis_client`` or any fixture built on them) is marked ``integration`` at
  collection, so ``pytest -m "not integration"`` never starts the broker or Redis.
* Every test *not* marked ``integration`` runs under a guard: starting a ``LocalStack``, opening a
  Redis connection or creating a Kafka client fails the test, with a message that names the missing
  marker (a test that starts its own stack must say so with ``@pytest.mark.integration``).

``slow`` (over ~30 s on an idle 2-core machine) and ``browser`` (the operator console) are set by
hand; tests/test_layout.py checks that every marker is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

STACK_FIXTURE = "local_stack"

UNMARKED = (
    "{what} in a test that is not marked integration: mark it @pytest.mark.integration "
    "(tests that start or use the broker or Redis are integration tests)"
)


class StackUse(RuntimeError):
    """A test without the integration marker touched the broker or Redis."""


@pytest.hookimpl(tryfirst=True)  # before -m selects: the marker must be there when it does
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURE in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)


def _guarded_targets() -> list[tuple[Any, str, str]]:
    """(owner, attribute, what) of every entry point that starts or reaches a broker or Redis."""
    targets: list[tuple[Any, str, str]] = []
    from devstack.stack import LocalStack

    targets.append((LocalStack, "start", "a LocalStack was started"))
    import redis.asyncio.connection
    import redis.connection

    targets.append((redis.connection.AbstractConnection, "connect", "a Redis connection was opened"))
    targets.append((redis.asyncio.connection.AbstractConnection, "connect", "a Redis connection was opened"))
    import kafka

    for cls in (kafka.KafkaProducer, kafka.KafkaConsumer, kafka.KafkaAdminClient):
        targets.append((cls, "__init__", f"a Kafka client ({cls.__name__}) was created"))
    try:
        import aiokafka
        from aiokafka.client import AIOKafkaClient
    except ImportError:  # pragma: no cover - aiokafka comes with faust
        return targets
    targets.append((AIOKafkaClient, "bootstrap", "a Kafka client (aiokafka) connected"))
    targets.append((aiokafka.AIOKafkaProducer, "start", "a Kafka client (AIOKafkaProducer) was started"))
    targets.append((aiokafka.AIOKafkaConsumer, "start", "a Kafka client (AIOKafkaConsumer) was started"))
    return targets


def _refuse(what: str, seen: list[str]) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        seen.append(what)
        raise StackUse(UNMARKED.format(what=what))

    return refuse


_SEEN = pytest.StashKey[list[str]]()


@pytest.fixture(autouse=True)
def _stack_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a test without the integration marker, every way to the broker or Redis raises StackUse
    and is recorded (``pytest_runtest_call`` fails the test even when the code under test caught it)."""
    if request.node.get_closest_marker("integration") is not None:
        return
    seen = request.node.stash.setdefault(_SEEN, [])
    for owner, attr, what in _guarded_targets():
        monkeypatch.setattr(owner, attr, _refuse(what, seen))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield  # a test that raised (StackUse included) has failed already
    seen = item.stash.get(_SEEN, [])
    if seen:
        pytest.fail(UNMARKED.format(what="; ".join(dict.fromkeys(seen))), pytrace=False)
    return result
