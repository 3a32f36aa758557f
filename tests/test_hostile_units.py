"""Issue 9, pure parts: bounded dead letters, JPEG header checks, the clock rule, the retry
classification, and the classifier core refusing bombs before any decoder runs (no broker)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack import hostile
from processors.classifier import Classifier
from processors.retry import redis_error_is_outage, send_error_is_permanent
from spillwatch.events import (
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    DeadLetter,
    EventError,
    FrameHeader,
    capture_ahead,
    check_jpeg,
    encode_frame,
    jpeg_info,
    peek_frame_header,
)
from spillwatch.model import SpillModel
from spillwatch.settings import Settings
from tests.helpers.tiny_model import build_tiny_model, clean_jpeg, spill_jpeg

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- dead letters


def test_dead_letter_of_a_huge_record_is_bounded_and_identifies_the_original() -> None:
    payload = b"SWF1" + bytes(20_000_000)
    dl = DeadLetter.wrap(source_topic="frames", key=b"cam-1", payload=payload, reason="x" * 10_000, service="classifier",
                         partition=3, offset=1234, category="too_large", blob=b"y" * 10_000)
    raw = dl.to_bytes()
    assert len(raw) < 1024 * 1024  # Apache Kafka's default record limit
    back = DeadLetter.from_bytes(raw)
    assert back.truncated and not back.complete and back.payload_size == len(payload)
    assert back.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert back.payload() == payload[: len(back.payload())] and (back.partition, back.offset) == (3, 1234)
    assert len(back.reason) <= 2000 and len(back.extra["blob"]) <= 500


def test_small_dead_letter_keeps_the_payload_byte_exact_and_old_ones_still_parse() -> None:
    dl = DeadLetter.wrap(source_topic="t", key=None, payload=b"\x00\xffabc", reason="r", service="s", category="c")
    assert dl.complete and dl.payload() == b"\x00\xffabc" and dl.extra == {"category": "c"}
    old = DeadLetter.from_bytes(
        b'{"v":1,"source_topic":"t","key":"k","reason":"r","service":"s","payload_b64":"' + base64.b64encode(b"p") + b'"}'
    )
    assert old.payload() == b"p" and old.complete and old.payload_size is None


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 3_000_000), st.integers(0, 2 * MAX_DEAD_LETTER_PAYLOAD_BYTES))
def test_dead_letter_never_exceeds_the_broker_default(size: int, limit: int) -> None:
    dl = DeadLetter.wrap(source_topic="x" * 200, key="k" * 1000, payload=b"\xff" * size, reason="r" * 5000, service="s",
                         payload_limit=limit, **{f"f{i}": "v" * 1000 for i in range(40)})
    assert len(dl.to_bytes()) < 1024 * 1024


# --------------------------------------------------------------------------- images


def test_jpeg_info_reads_dimensions_without_decoding() -> None:
    info = jpeg_info(spill_jpeg(320, 240))
    assert (info.width, info.height, info.progressive, info.scans) == (320, 240, False, 1)
    bomb = jpeg_info(hostile.jpeg_with_size(spill_jpeg(), 30000, 30000))
    assert bomb.pixels == 900_000_000


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (hostile.png_bomb(64, complete=True), "PNG"),
        (b"GIF89a....", "not a JPEG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100), "no frame header"),
        (b"\xff\xd8\xff\xda\x00\x08", "before its frame header"),
        (b"\xff\xd8\xff\xc3\x00\x11\x08\x00\x10\x00\x10\x03", "unsupported JPEG coding"),
        (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03", "empty image"),
        (b"\xff\xd8\xff\xe0\x00\x01", "invalid length"),
    ],
)
def test_jpeg_info_refuses_what_producers_never_send(data: bytes, needle: str) -> None:
    with pytest.raises(EventError, match=needle):
        jpeg_info(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_jpeg_info_never_fails_other_than_with_event_error(data: bytes) -> None:
    for candidate in (data, b"\xff\xd8\xff" + data):
        try:
            jpeg_info(candidate)
        except EventError:
            pass


def test_check_jpeg_limits() -> None:
    with pytest.raises(EventError, match="image too large"):
        check_jpeg(hostile.jpeg_with_size(spill_jpeg(), 30000, 30000), max_pixels=8_294_400, max_scans=32)
    with pytest.raises(EventError, match="too many scans"):
        check_jpeg(hostile.many_scans_jpeg(spill_jpeg(), 40), max_pixels=8_294_400, max_scans=32)
    assert check_jpeg(spill_jpeg(), max_pixels=320 * 240, max_scans=1).pixels == 320 * 240


def test_capture_ahead_rule() -> None:
    assert capture_ahead(T0 + timedelta(seconds=120), T0, 120) is None
    assert capture_ahead(T0 - timedelta(days=365), T0, 120) is None  # the past is fine (replay)
    reason = capture_ahead(datetime(2100, 1, 1, tzinfo=UTC), T0, 120)
    assert reason is not None and "ahead of this clock" in reason


def test_peek_frame_header_reads_a_dead_letter_prefix() -> None:
    value = encode_frame(FrameHeader(camera_id="c", seq=5, epoch=7, capture_time=T0, width=1, height=1), bytes(500_000))
    head = peek_frame_header(value[:1000])
    assert head is not None and (head.camera_id, head.seq, head.epoch) == ("c", 5, 7)
    assert peek_frame_header(b"junk") is None and peek_frame_header(value[:20]) is None


# --------------------------------------------------------------------------- retry classification


def test_send_errors_permanent_or_not() -> None:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError
    from faust.exceptions import ProducerSendError

    wrapped = ProducerSendError("Error while sending")
    wrapped.__cause__ = MessageSizeTooLargeError()
    assert send_error_is_permanent(MessageSizeTooLargeError()) and send_error_is_permanent(wrapped)
    for transient in (KafkaConnectionError(), KafkaTimeoutError(), NotLeaderForPartitionError(), OSError("reset")):
        assert not send_error_is_permanent(transient)


def test_redis_errors_outage_or_fault_of_the_record() -> None:
    from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError, TimeoutError

    for outage in (ConnectionError(), TimeoutError(), BusyLoadingError("LOADING"), ResponseError("OOM command not allowed"),
                   OSError("refused")):
        assert redis_error_is_outage(outage)
    for fault in (ResponseError("WRONGTYPE Operation against a key"), ValueError("bug"), RuntimeError("kept changing")):
        assert not redis_error_is_outage(fault)


# --------------------------------------------------------------------------- the classifier core


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    tiny = build_tiny_model(tmp_path_factory.mktemp("model"))
    return Classifier(SpillModel.load(tiny, threads=1), Settings(worker={"model_path": Path(tiny)}), "w-test")


def test_classifier_refuses_bombs_skew_and_formats_before_decoding(core: Classifier) -> None:
    now = datetime.now(UTC)
    records = [(b"cam", r.build("cam", spill_jpeg())) for r in hostile.corpus() if r.topic == "frames"]
    records.append((b"cam", hostile.frame("cam", 1, clean_jpeg(), capture=now, epoch=9)))
    ok, bad = core.process(records, now=now)
    assert [(c.event.seq, c.event.epoch, c.index) for c in ok] == [(1, 9, len(records) - 1)]
    cats = {b.index: b.category for b in bad}
    names = [r.name for r in hostile.corpus() if r.topic == "frames"]
    got = {names[i]: c for i, c in cats.items()}
    assert got["PNG bomb 30000x30000"] == "not_jpeg" and got["PNG frame"] == "not_jpeg"
    assert got["JPEG bomb 30000x30000"] == "image_too_large" and got["JPEG with 5000 scans"] == "image_too_large"
    assert got["forged future frame"] == "clock_skew" and got["clock-skewed producer"] == "clock_skew"
    assert got["oversized frame 20 MB"] == "too_large" and got["corrupt JPEG"] == "bad_image"
    assert got["malformed envelope"] == "bad_envelope"


# --------------------------------------------------------------------------- the send policy


class _Topic:
    """An in-memory stand-in for a Faust topic: refuses values over ``limit`` the way the client
    does (MessageSizeTooLargeError at send), and fails the first ``outages`` sends with a broken
    connection."""

    def __init__(self, limit: int, outages: int = 0) -> None:
        self.limit, self.outages, self.got, self.calls = limit, outages, [], 0

    async def send(self, *, key: bytes | None, value: bytes) -> object:
        import asyncio

        from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

        self.calls += 1
        if self.outages:
            self.outages -= 1
            raise KafkaConnectionError("broker away")
        if len(value) > self.limit:
            raise MessageSizeTooLargeError()
        self.got.append(value)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_send_policy_replaces_a_refused_record_and_holds_through_outages() -> None:
    import asyncio

    from processors.app import Outgoing, _send_all

    topic = _Topic(limit=100, outages=2)
    fallback = Outgoing(topic, b"k", b"small dead letter")
    sends = [Outgoing(topic, b"k", b"ok"), Outgoing(topic, b"k", b"x" * 1000, fallback=lambda exc: fallback)]
    asyncio.run(_send_all(sends, attempts=3))
    assert b"ok" in topic.got and b"small dead letter" in topic.got and b"x" * 1000 not in topic.got
