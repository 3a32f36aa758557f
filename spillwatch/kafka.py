"""Kafka client settings and helpers, per broker profile.

Two profiles (``settings.kafka.profile``):

- ``local``: the embedded Tansu broker (dev, tests, CI, demo). Its group coordinator holds JoinGroup
  for about half the session timeout, so sessions are short (6 s, heartbeat 1 s); idempotent
  producers fail for good after a broker restart, so idempotence is off and ``acks=1`` (consumers
  are idempotent instead); small linger with large batches for throughput.
- ``apache``: Apache Kafka at a site: idempotent producer, ``acks=all``, the client libraries'
  normal group timeouts.

Only client settings differ; no code path depends on which broker is behind the bootstrap address.
kafka-python is used for producers, plain consumers and admin; ``faust_broker_settings`` gives the
matching keyword arguments of a ``faust.App``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spillwatch.errors import BrokerUnavailable
from spillwatch.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from kafka import KafkaConsumer, KafkaProducer

    from spillwatch.settings import Settings

log = get_logger("spillwatch.kafka")

# Room for the frame envelope header and record overhead above the largest accepted frame.
_REQUEST_MARGIN = 64 * 1024


@dataclass(frozen=True)
class ClientProfile:
    """Client timing and delivery settings for one kind of broker."""

    name: str
    session_timeout_s: float
    heartbeat_interval_s: float
    rebalance_timeout_s: float
    max_poll_interval_s: float
    acks: int | str
    enable_idempotence: bool
    linger_ms: int
    batch_size: int
    request_timeout_ms: int
    # Faust/aiokafka: one record per batch, so the broker's "latest offset" answer stays exact
    # (Tansu answers short when the last batch holds several records; Faust table recovery skips).
    faust_max_batch_size: int | None
    # How long a fetch may wait for data. The local broker answers a waiting fetch only at this
    # deadline (not when data arrives), so a long wait adds straight to latency there.
    fetch_max_wait_ms: int = 500
    # How long a Faust consumer may fetch nothing before its client leaves the group. Faust stops
    # fetching a partition while the agent's stream buffer is over 80 % full and fetches it again
    # only once the agent has emptied the buffer, so a backlogged worker fetches nothing for
    # 0.8 x stream buffer / its rate; with the 10 s of max_poll_interval_s a classifier under ~330
    # frames/s (Faust's 4096-record buffer; ~80 with 1024) left its group and the workers stalled for
    # good (processors/app.py, docs/performance.md).
    # This is only the client's idle check (JoinGroup waits rebalance_timeout_s): a worker whose
    # agent hangs while its event loop runs loses its partitions after this long, as with the
    # apache profile; a dead or frozen process is still seen within the session timeout.
    faust_max_poll_interval_s: float = 300.0


PROFILES: dict[str, ClientProfile] = {
    "local": ClientProfile(
        name="local",
        session_timeout_s=6.0,
        heartbeat_interval_s=1.0,
        rebalance_timeout_s=10.0,
        max_poll_interval_s=10.0,
        acks=1,
        enable_idempotence=False,
        linger_ms=5,
        batch_size=1024 * 1024,
        request_timeout_ms=10_000,
        faust_max_batch_size=1,
        fetch_max_wait_ms=50,
    ),
    "apache": ClientProfile(
        name="apache",
        session_timeout_s=45.0,
        heartbeat_interval_s=3.0,
        rebalance_timeout_s=60.0,
        max_poll_interval_s=300.0,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
        request_timeout_ms=30_000,
        faust_max_batch_size=None,
    ),
}


def profile(settings: Settings) -> ClientProfile:
    return PROFILES[settings.kafka.profile]


def bootstrap_list(bootstrap: str) -> list[str]:
    return [b.strip() for b in bootstrap.replace(";", ",").split(",") if b.strip()]


def security_config(settings: Settings) -> dict[str, Any]:
    """TLS and SASL settings of every client (kafka-python names): ``kafka.security_protocol``
    (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``sasl_*`` (PLAIN, SCRAM-SHA-256/512) and
    ``ssl_cafile`` (a private CA, e.g. a Strimzi cluster CA; None trusts the system CAs)."""
    k = settings.kafka
    cfg: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        cfg["sasl_mechanism"] = k.sasl_mechanism
        cfg["sasl_plain_username"] = k.sasl_username
        cfg["sasl_plain_password"] = k.sasl_password.get_secret_value() if k.sasl_password else None
    if k.ssl_cafile is not None:
        cfg["ssl_cafile"] = str(k.ssl_cafile)
    return cfg


def common_config(settings: Settings, client_id: str | None = None) -> dict[str, Any]:
    """Connection settings shared by producers, consumers and admin clients (kafka-python names)."""
    k = settings.kafka
    cfg: dict[str, Any] = {
        "bootstrap_servers": bootstrap_list(k.bootstrap),
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 2_000,
        **security_config(settings),
    }
    if client_id:
        cfg["client_id"] = client_id
    return cfg


def producer_config(settings: Settings, client_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments for the configured profile."""
    p = profile(settings)
    max_record = settings.limits.frame_bytes
    cfg = common_config(settings, client_id)
    cfg.update(
        acks=p.acks,
        enable_idempotence=p.enable_idempotence,
        linger_ms=p.linger_ms,
        batch_size=p.batch_size,
        max_request_size=max(1024 * 1024, max_record + _REQUEST_MARGIN),
        request_timeout_ms=p.request_timeout_ms,
        # A send() never blocks the capture loop for long when the broker is away (metadata wait).
        max_block_ms=5_000,
        retry_backoff_ms=200,
    )
    if p.enable_idempotence:
        cfg["max_in_flight_requests_per_connection"] = 5
    cfg.update(overrides)
    return cfg


def make_producer(settings: Settings, client_id: str | None = None, **overrides: Any) -> KafkaProducer:
    from kafka import KafkaProducer

    return KafkaProducer(**producer_config(settings, client_id, **overrides))


def consumer_config(
    settings: Settings, group_id: str | None, client_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """kafka-python ``KafkaConsumer`` keyword arguments for the configured profile."""
    p = profile(settings)
    cfg = common_config(settings, client_id)
    cfg.update(
        group_id=group_id,
        session_timeout_ms=int(p.session_timeout_s * 1000),
        heartbeat_interval_ms=int(p.heartbeat_interval_s * 1000),
        max_poll_interval_ms=int(p.max_poll_interval_s * 1000),
        request_timeout_ms=max(p.request_timeout_ms, int(p.session_timeout_s * 1000) + 5_000),
        auto_offset_reset="earliest",
        enable_auto_commit=group_id is not None,
        max_partition_fetch_bytes=max(1024 * 1024, settings.limits.frame_bytes + _REQUEST_MARGIN),
        fetch_max_bytes=max(50 * 1024 * 1024, settings.limits.frame_bytes + _REQUEST_MARGIN),
        allow_auto_create_topics=False,
        fetch_max_wait_ms=p.fetch_max_wait_ms,
    )
    cfg.update(overrides)
    return cfg


def make_consumer(
    settings: Settings, topics: str | list[str] | tuple[str, ...], group_id: str | None = None, **kw: Any
) -> KafkaConsumer:
    """A kafka-python consumer subscribed to ``topics`` (none when empty: assign() yourself)."""
    from kafka import KafkaConsumer

    names = [topics] if isinstance(topics, str) else list(topics)
    return KafkaConsumer(*names, **consumer_config(settings, group_id, **kw))


def faust_broker_settings(settings: Settings, *, safe_offsets: bool | None = None) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` for the configured broker and profile.

    ``safe_offsets`` (default: on for the local profile) sets ``producer_max_batch_size=1`` so the
    local broker's "latest offset" stays exact (needed only if a Faust table/changelog is used;
    costs some producer throughput — pass False when the app keeps no tables).
    """
    p = profile(settings)
    k = settings.kafka
    hosts = ";".join(bootstrap_list(k.bootstrap))
    scheme = "kafka"
    max_record = settings.limits.frame_bytes
    out: dict[str, Any] = {
        "broker": f"{scheme}://{hosts}",
        "broker_session_timeout": p.session_timeout_s,
        "broker_heartbeat_interval": p.heartbeat_interval_s,
        "broker_rebalance_timeout": p.rebalance_timeout_s,
        "broker_max_poll_interval": p.faust_max_poll_interval_s,
        "broker_request_timeout": max(p.request_timeout_ms / 1000, p.session_timeout_s + 5),
        "topic_replication_factor": k.replication_factor,
        "topic_partitions": k.partitions,
        "topic_allow_declare": True,
        "producer_acks": -1 if p.acks == "all" else p.acks,
        "producer_linger": p.linger_ms / 1000,
        "producer_max_request_size": max(1024 * 1024, max_record + _REQUEST_MARGIN),
        "consumer_max_fetch_size": max(4 * 1024 * 1024, max_record + _REQUEST_MARGIN),
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "at_least_once",
    }
    if safe_offsets is None:
        safe_offsets = p.faust_max_batch_size is not None
    if safe_offsets and p.faust_max_batch_size is not None:
        out["producer_max_batch_size"] = p.faust_max_batch_size
    if k.sasl_mechanism or k.security_protocol != "PLAINTEXT":
        import faust

        if k.sasl_mechanism:
            ssl = k.security_protocol.upper() == "SASL_SSL"
            out["broker_credentials"] = faust.SASLCredentials(
                username=k.sasl_username or "",
                password=k.sasl_password.get_secret_value() if k.sasl_password else "",
                mechanism=k.sasl_mechanism,
                ssl_context=_ssl_context(k.ssl_cafile) if ssl else None,
            )
        elif k.security_protocol.upper() == "SSL":
            out["broker_credentials"] = _ssl_context(k.ssl_cafile)
    return out


def _ssl_context(cafile: Any = None) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def topic_specs(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    """The pipeline's topics: frames/classifications carry the load (``kafka.partitions``,
    co-partitioned by camera id); the low-volume topics get one partition (total order).

    ``frames`` accepts records up to ``limits.frame_bytes`` (``max.message.bytes``); every other
    topic keeps the broker's default limit (1 MiB on Apache Kafka): events are far smaller
    (``limits.event_bytes``) and dead letters are bounded below it (``events.DeadLetter``)."""
    t = settings.topics
    n = partitions or settings.kafka.partitions
    hour = str(3600 * 1000)
    month = str(30 * 24 * 3600 * 1000)
    specs = [
        TopicSpec(t.frames, n, {"retention.ms": hour, "max.message.bytes": str(settings.limits.frame_bytes + _REQUEST_MARGIN)}),
        TopicSpec(t.classifications, n, {"retention.ms": str(24 * 3600 * 1000)}),
        TopicSpec(t.spill_alerts, 1, {"retention.ms": month}),
        TopicSpec(t.camera_health, 1, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        TopicSpec(t.camera_alerts, 1, {"retention.ms": month}),
    ]
    for src in t.dead_lettered():
        specs.append(TopicSpec(t.dead_letter(src), 1, {"retention.ms": month}))
    specs.append(TopicSpec(t.pages_dead_letter, 1, {"retention.ms": month}))
    return specs


def make_admin(settings: Settings, client_id: str = "spillwatch-admin") -> Any:
    """A kafka-python admin client for the configured brokers.

    kafka-python 3 rejects the ``authorized_operations`` bitmask some brokers (Tansu) return in
    DescribeGroups; nothing here needs it, so it is dropped before parsing."""
    from kafka import KafkaAdminClient

    class _Admin(KafkaAdminClient):  # type: ignore[misc]
        def _process_acl_operations(self, obj: dict[str, Any]) -> dict[str, Any]:
            obj.pop("authorized_operations", None)
            return obj

    return _Admin(**common_config(settings, client_id))


def groups_ready(settings: Settings, members: dict[str, int]) -> bool:
    """True when every consumer group in ``members`` is Stable with at least that many members
    (its consumers own their partitions). False while groups form or the broker is busy."""
    admin = make_admin(settings, "spillwatch-admin-groups")
    try:
        desc = admin.describe_groups(list(members))
    except Exception as exc:  # noqa: BLE001 - "coordinator loading" while groups form
        log.debug("groups not ready", error=str(exc))
        return False
    finally:
        admin.close()
    for group, n in members.items():
        d = desc.get(group) or {}
        if d.get("group_state") != "Stable" or len(d.get("members") or []) < n:
            return False
    return True


def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Records of ``topic`` the consumer group has not committed yet (end offset - committed offset,
    summed over partitions; a partition never committed counts in full). The positive signal that a
    group has processed everything published before the call; also the autoscaling metric."""
    from kafka import TopicPartition

    admin = make_admin(settings, "spillwatch-admin-lag")
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    probe = make_consumer(settings, [], group_id=None, enable_auto_commit=False, client_id="spillwatch-lag-probe")
    try:
        parts = probe.partitions_for_topic(topic) or set()
        ends = probe.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        probe.close()
    lag = 0
    for tp, end in ends.items():
        c = committed.get(tp)
        done = c.offset if c is not None and c.offset is not None and c.offset >= 0 else 0
        lag += max(0, end - done)
    return lag


def delete_topics_with_prefix(settings: Settings, prefix: str) -> int:
    """Delete every topic whose name starts with ``prefix`` (a private namespace); returns how many."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = make_admin(settings, "spillwatch-admin-cleanup")
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)
        return len(mine)
    finally:
        admin.close()


def create_topics(settings: Settings, partitions: int | None = None, timeout_s: float = 30.0) -> dict[str, str]:
    """Create the pipeline's topics if missing (idempotent). Returns {topic: "created"|"exists"}."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wait_for_broker(settings.kafka.bootstrap, timeout_s, security_config(settings))
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        result: dict[str, str] = {}
        for spec in topic_specs(settings, partitions):
            if spec.name in existing:
                result[spec.name] = "exists"
                continue
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            settings.kafka.replication_factor,
                            topic_configs=spec.configs,
                        )
                    ]
                )
                result[spec.name] = "created"
            except TopicAlreadyExistsError:
                result[spec.name] = "exists"
        _wait_topics_ready(admin, [s.name for s in topic_specs(settings, partitions)], timeout_s)
        created = [n for n, r in result.items() if r == "created"]
        log.info("topics ready", created=len(created), existing=len(result) - len(created))
        return result
    finally:
        admin.close()


def _wait_topics_ready(admin: Any, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            desc = admin.describe_topics(names)
            if all(d.get("error_code", 0) == 0 and d.get("partitions") for d in desc):
                return
        except Exception:  # noqa: BLE001 - metadata not propagated yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not ready after {timeout_s}s: {names}")
        time.sleep(0.2)


def topic_partitions(settings: Settings, topic: str) -> int:
    """Number of partitions of ``topic`` (0 if it does not exist)."""
    admin = make_admin(settings)
    try:
        if topic not in admin.list_topics():
            return 0
        (d,) = admin.describe_topics([topic])
        return len(d.get("partitions") or [])
    finally:
        admin.close()


# --------------------------------------------------------------------------- health


def _tcp_ok(hostport: str, timeout: float) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def broker_ready(bootstrap: str, timeout_s: float = 3.0, security: dict[str, Any] | None = None) -> bool:
    """True when a broker answers a metadata request (not just accepts TCP); ``security``: TLS/SASL
    client settings (:func:`security_config`) for a broker that requires them."""
    from kafka import KafkaAdminClient

    hosts = bootstrap_list(bootstrap)
    if not any(_tcp_ok(h, min(timeout_s, 1.0)) for h in hosts):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=hosts,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            reconnect_backoff_max_ms=500,
            **(security or {}),
        )
    except Exception:  # noqa: BLE001 - NoBrokersAvailable and friends
        return False
    try:
        admin.list_topics()
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        admin.close()


def wait_for_broker(bootstrap: str, timeout: float = 30.0, security: dict[str, Any] | None = None) -> None:
    """Block until the broker answers metadata requests; BrokerUnavailable after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if broker_ready(bootstrap, timeout_s=min(3.0, max(0.5, deadline - time.monotonic())), security=security):
            return
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"Kafka broker at {bootstrap} not ready after {timeout:.0f}s")
        time.sleep(0.2)
