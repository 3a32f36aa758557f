"""Classifier workers and the aggregator as real processes on the real local broker and Redis.

Workers run as ``spillwatch worker|aggregator`` subprocesses of a ServiceGroup (the one service
harness), configured by the settings it hands them; the model is the tiny real ONNX graph of
``tests/helpers/tiny_model.py``. "Nothing more arrived" is proven by a positive signal: the aggregator's
consumer group has committed every classification and its outbox is empty, then the alerts are read
to their end (``settled``).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spillwatch.events import (
    FRAME_MAGIC,
    Classification,
    DeadLetter,
    FrameHeader,
    encode_frame,
)
from spillwatch.settings import REPO_ROOT, CameraConfig, Settings
from spillwatch.supervisor import ServiceGroup
from tests.helpers import TopicTail, consume_all, settled_alerts, wait_until
from tests.helpers.tiny_model import build_tiny_model, clean_jpeg, spill_jpeg

pytestmark = pytest.mark.integration


@pytest.fixture()
def procs(stack_settings: Settings, tmp_path: Path) -> Iterator[ServiceGroup]:
    s = stack_settings
    settings = s.model_copy(update={
        "log_format": "json",
        "worker": s.worker.model_copy(update={
            "model_path": build_tiny_model(tmp_path / "model"), "intra_op_threads": 1,
        }),
        "limits": s.limits.model_copy(update={"frame_bytes": 200_000}),
        "alerting": s.alerting.model_copy(update={"evidence_dir": tmp_path / "evidence"}),
        "aggregator": s.aggregator.model_copy(update={"tick_interval_s": 0.5}),
    })
    with ServiceGroup(settings, tmp_path / "logs", cwd=REPO_ROOT) as group:
        yield group


T0 = datetime.now(UTC).replace(microsecond=0)


def frame(cam: str, seq: int, jpeg: bytes) -> bytes:
    h = FrameHeader(camera_id=cam, seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), width=320, height=240)
    return encode_frame(h, jpeg)


def values(tail: TopicTail) -> list[bytes]:
    return [r.value for r in tail.snapshot() if r.value is not None]


@pytest.mark.timeout(90)
def test_worker_classifies_every_frame_and_dead_letters_bad_ones(stack_settings: Settings, procs: ServiceGroup) -> None:
    from spillwatch.kafka import make_producer

    s, t = stack_settings, stack_settings.topics
    worker = procs.start("worker")
    prod = make_producer(s)
    sent = set()
    for seq in range(6):
        for cam in ("cam-a", "cam-b", "cam-c"):
            prod.send(t.frames, key=cam.encode(), value=frame(cam, seq, spill_jpeg() if cam == "cam-a" else clean_jpeg()))
            sent.add((cam, seq))
    good = spill_jpeg()
    head = json.dumps({"v": 9, "camera_id": "cam-a", "seq": 99, "capture_time": T0.isoformat(), "width": 1, "height": 1})
    bad = {
        "corrupt": frame("cam-a", 100, good[:30] + bytes(len(good) - 30)),
        "oversized": frame("cam-a", 101, os.urandom(250_000)),
        "malformed": b"this is not an envelope",
        "version": FRAME_MAGIC + len(head).to_bytes(4, "big") + head.encode() + good,
    }
    for name, value in bad.items():
        prod.send(t.frames, key=f"bad-{name}".encode(), value=value)
    prod.flush()

    out = TopicTail(s, t.classifications)
    try:
        out.wait_for(lambda recs: len(recs) >= len(sent), 60)
        events = [Classification.from_bytes(v) for v in values(out)]
        assert {(e.camera_id, e.seq) for e in events} == sent  # one per good frame, no bad ones
        for e in events:
            assert e.model_version == "tiny-test-1" and e.worker.endswith(str(worker.pid))
            assert (e.spill_prob > 0.9) == (e.camera_id == "cam-a")
            assert e.capture_time == T0 + timedelta(seconds=e.seq / 2)
        dead = [DeadLetter.from_bytes(r.value) for r in consume_all(s, t.dead_letter(t.frames), 20, min_count=4)]
        reasons = {d.key: d.reason for d in dead}
        assert set(reasons) == {f"bad-{n}" for n in bad}
        assert "decode" in reasons["bad-corrupt"] or "JPEG" in reasons["bad-corrupt"]  # refused by its markers or the decoder
        assert "too large" in reasons["bad-oversized"]
        assert "bad magic" in reasons["bad-malformed"]
        assert "v:" in reasons["bad-version"]
        assert all(d.service == "classifier" and d.source_topic == t.frames for d in dead)
        assert next(d for d in dead if d.key == "bad-malformed").payload() == bad["malformed"]
        # still running and still classifying after the bad records
        assert worker.running()
        prod.send(t.frames, key=b"cam-z", value=frame("cam-z", 0, clean_jpeg()))
        prod.flush()
        out.wait_for(lambda recs: any(b'"cam-z"' in (r.value or b"") for r in recs), 30)
        assert worker.running()
    finally:
        out.close()
        prod.close()


def cls_bytes(cam: str, seq: int, prob: float) -> bytes:
    return Classification(
        camera_id=cam, seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), spill_prob=prob, model_version="tiny-test-1"
    ).to_bytes()


@pytest.mark.timeout(90)
def test_aggregator_one_alert_per_incident_under_redelivery(stack_settings: Settings, procs: ServiceGroup) -> None:
    from spillwatch.kafka import make_producer

    s, t = stack_settings, stack_settings.topics
    cams = [CameraConfig(id=c, source="x") for c in ("spill", "clean")]
    agg = procs.start("aggregator", settings=procs.settings.model_copy(update={"cameras": cams}))
    prod = make_producer(s)
    spill = [0.1] * 4 + [0.9] * 12
    for _round in range(2):  # the second round is a full redelivery of the first
        for seq, p in enumerate(spill):
            prod.send(t.classifications, key=b"spill", value=cls_bytes("spill", seq, p))
            prod.send(t.classifications, key=b"clean", value=cls_bytes("clean", seq, 0.2 if seq % 5 else 0.9))
        prod.flush()
    prod.send(t.classifications, key=b"x", value=b"{broken json")
    prod.send(t.classifications, key=b"spill", value=cls_bytes("spill", 50, 0.9).replace(b'"v":1', b'"v":7'))
    prod.send(t.classifications, key=b"ghost", value=cls_bytes("ghost", 1, 0.9))
    prod.flush()
    prod.close()

    dead = [DeadLetter.from_bytes(r.value) for r in consume_all(s, t.dead_letter(t.classifications), 60, min_count=3)]
    assert sorted(d.extra["category"] for d in dead) == ["malformed", "unknown_camera", "unknown_version"]
    alerts = settled_alerts(s, timeout_s=60)  # every classification handled; nothing more can come
    assert [(a.camera_id, a.state.value) for a in alerts] == [("spill", "confirmed")]
    a = alerts[0]
    assert a.evidence.confirming_seq == 6 and a.first_seen == T0 + timedelta(seconds=2)
    assert a.model_version == "tiny-test-1"
    assert agg.running()


@pytest.mark.timeout(150)
def test_sigkill_classifier_mid_stream_incident_confirmed_exactly_once(stack_settings: Settings, procs: ServiceGroup) -> None:
    from spillwatch.kafka import make_producer

    s, t = stack_settings, stack_settings.topics
    w1, w2 = procs.start("worker"), procs.start("worker")
    procs.start("aggregator")
    by_pid = {str(w1.pid): w1, str(w2.pid): w2}
    cams = ["k0", "k1", "k2", "k3"]
    onset, n = 30, 70  # the spill appears at seq 30 on k0 and k2, stays to the end
    spill_cams = {"k0", "k2"}
    jpegs = {True: spill_jpeg(), False: clean_jpeg()}
    prod = make_producer(s)
    out = TopicTail(s, t.classifications)
    try:
        # warm-up until both workers own partitions and classify
        seq = 0
        deadline = time.monotonic() + 60
        workers_seen: set[str] = set()
        while len(workers_seen) < 2:
            assert time.monotonic() < deadline, f"both workers never became active: {workers_seen}"
            for cam in cams:
                prod.send(t.frames, key=cam.encode(), value=frame(cam, seq, jpegs[False]))
            prod.flush()
            seq = min(seq + 1, onset - 10)
            time.sleep(0.25)
            out.poll()
            workers_seen = {Classification.from_bytes(v).worker.rsplit("-", 1)[1] for v in values(out)}
        # kill the worker that classifies k0 (a spill camera), mid-stream, just before the onset
        k0_worker = [Classification.from_bytes(v) for v in values(out) if b'"k0"' in v][-1].worker.rsplit("-", 1)[1]
        victim = by_pid[k0_worker]
        for seq in range(seq, n):  # noqa: B020 - carries on from the last seq sent
            for cam in cams:
                prod.send(t.frames, key=cam.encode(), value=frame(cam, seq, jpegs[cam in spill_cams and seq >= onset]))
            prod.flush()
            if seq == onset - 2:
                victim.signal(signal.SIGKILL)
            time.sleep(0.05)
        victim.wait(10)
        survivor = w2 if victim is w1 else w1
        # every frame is classified (by someone) despite the kill
        want = {(c, q) for c in cams for q in range(onset - 10, n)}
        out.wait_for(lambda _: want <= {(e.camera_id, e.seq) for e in map(Classification.from_bytes, values(out))}, 60)
        assert survivor.running()
        after = [e for e in map(Classification.from_bytes, values(out)) if e.camera_id == "k0" and e.seq >= onset]
        assert after and all(e.worker.endswith(f"-{survivor.pid}") for e in after)  # taken over
    finally:
        out.close()
        prod.close()
    alerts = settled_alerts(s, timeout_s=60)
    confirmed = sorted((a.camera_id, a.evidence.confirming_seq) for a in alerts if a.state.value == "confirmed")
    assert [c for c, _ in confirmed] == sorted(spill_cams), alerts
    for _, confirming in confirmed:
        assert onset + 2 <= confirming <= onset + 4
    snaps = [a.evidence.snapshot_ref for a in alerts]
    assert all(ref and Path(ref).is_file() for ref in snaps)


@pytest.mark.timeout(120)
def test_sigkill_aggregator_mid_incident_state_survives_in_redis(
    stack_settings: Settings, procs: ServiceGroup, redis_client: Any
) -> None:
    from spillwatch.kafka import make_producer
    from spillwatch.redis_keys import RedisKeys

    s, t = stack_settings, stack_settings.topics
    agg1 = procs.start("aggregator")
    prod = make_producer(s)
    # 4 clean frames, then 2 spill frames: suspected, not yet confirmed (k = 3)
    for seq, p in enumerate([0.1, 0.1, 0.1, 0.1, 0.9, 0.9]):
        prod.send(t.classifications, key=b"cam-k", value=cls_bytes("cam-k", seq, p))
    prod.flush()
    key = RedisKeys(s.redis.key_prefix).agg_state("cam-k")
    wait_until(lambda: (raw := redis_client.get(key)) and json.loads(raw)["last_seq"] == 5, 60)
    state = json.loads(redis_client.get(key))
    assert state["phase"] == "suspected" and state["suspect_seq"] == 4
    agg1.signal(signal.SIGKILL)
    agg1.wait(10)
    # a fresh aggregator picks up where the dead one left (its offsets may be behind: redelivery)
    agg2 = procs.start("aggregator")
    for seq in range(6, 12):
        prod.send(t.classifications, key=b"cam-k", value=cls_bytes("cam-k", seq, 0.9))
    prod.flush()
    prod.close()
    alerts = settled_alerts(s, timeout_s=60)
    assert [(a.state.value, a.evidence.confirming_seq) for a in alerts] == [("confirmed", 6)]
    # the window spanned the kill: the incident starts at the first spill frame seen before it
    assert alerts[0].first_seen == T0 + timedelta(seconds=2)
    assert agg2.running()
