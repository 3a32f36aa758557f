"""Shared fixtures: one real local stack (Tansu broker + Redis/Valkey) per test session.

- ``local_stack`` (session): broker and Redis on free loopback ports; ``.bootstrap``, ``.redis_url``.
- ``stack_settings`` (function): Settings pointed at it with a unique topic prefix and Redis key
  prefix per test (tests share one broker), the pipeline topics created with 4 partitions.
- ``redis_client`` (function): ``redis.Redis`` on the stack's Redis.

Every test that uses them is marked ``integration``; a test without that marker that touches the
broker or Redis fails (tests/helpers/markers.py). Helpers live in ``tests/helpers/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from spillwatch.settings import DEFAULT_MODEL, Settings
from tests.helpers.markers import (  # noqa: F401 - the marker plugin (tests/helpers/markers.py)
    _stack_guard,
    pytest_collection_modifyitems,
    pytest_runtest_call,
)

TEST_PARTITIONS = 4


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    stack = LocalStack()
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _unique(request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def stack_settings(local_stack: LocalStack, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    from spillwatch.kafka import create_topics

    ns = _unique(request)
    settings = Settings(
        kafka={
            "bootstrap": local_stack.bootstrap,
            "profile": "local",
            "topic_prefix": f"t.{ns}.",
            "partitions": TEST_PARTITIONS,
        },
        redis={"url": local_stack.redis_url, "key_prefix": f"t:{ns}"},
        worker={"model_path": DEFAULT_MODEL},
        data_dir=tmp_path / "data",
    )
    create_topics(settings, partitions=TEST_PARTITIONS)
    return settings


@pytest.fixture()
def redis_client(local_stack: LocalStack) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(local_stack.redis_url)
    try:
        yield client
    finally:
        client.close()
