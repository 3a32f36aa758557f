"""Classifier workers and the aggregator as real processes on the real local broker and Redis.

Workers run as subprocesses (``python -m spillwatch.cli worker|aggregator``) configured through the
environment, exactly as deployed; the model is the tiny real ONNX graph of ``tests/tiny_model.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from processors.bench import stop_processes
from spillwatch.events import (
    FRAME_MAGIC,
    Classification,
    DeadLetter,
    FrameHeader,
    SpillAlert,
    encode_frame,
)
from spillwatch.settings import REPO_ROOT, Settings
from tests.helpers import consume_all, wait_until
from tests.tiny_model import build_tiny_model, clean_jpeg, spill_jpeg

pytestmark = pytest.mark.integration


class Procs:
    """Service subprocesses of one test; all are stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, **extra_env: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        log = open(self.logdir / f"{role}-{n}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [sys.executable, "-m", "spillwatch.cli", "--log-format", "json", role],
            env={**self.env, **extra_env},
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        return p

    def log(self, p: subprocess.Popen[bytes]) -> str:
        i = self.procs.index(p)
        return next(self.logdir.glob(f"*-{i}.log")).read_text(errors="replace")

    def stop(self) -> None:
        stop_processes(self.procs, grace_s=15)


@pytest.fixture()
def procs(stack_settings: Settings, tmp_path: Path) -> Iterator[Procs]:
    model = build_tiny_model(tmp_path / "model")
    s = stack_settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPILLWATCH_")}
    env.update(
        SPILLWATCH_KAFKA__BOOTSTRAP=s.kafka.bootstrap,
        SPILLWATCH_KAFKA__TOPIC_PREFIX=s.kafka.topic_prefix,
        SPILLWATCH_KAFKA__PARTITIONS=str(s.kafka.partitions),
        SPILLWATCH_REDIS__URL=s.redis.url,
        SPILLWATCH_REDIS__KEY_PREFIX=s.redis.key_prefix,
        SPILLWATCH_WORKER__MODEL_PATH=str(model),
        SPILLWATCH_WORKER__INTRA_OP_THREADS="1",
        SPILLWATCH_WORKER__MAX_FRAME_BYTES="200000",
        SPILLWATCH_ALERTING__EVIDENCE_DIR=str(tmp_path / "evidence"),
        SPILLWATCH_AGGREGATOR__TICK_INTERVAL_S="0.5",
    )
    pr = Procs(env, tmp_path)
    try:
        yield pr
    finally:
        pr.stop()


T0 = datetime.now(UTC).replace(microsecond=0)


def frame(cam: str, seq: int, jpeg: bytes) -> bytes:
    h = FrameHeader(camera_id=cam, seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), width=320, height=240)
    return encode_frame(h, jpeg)


class Tail:
    """Reads a topic from the beginning and keeps reading (all partitions, no group)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import TopicPartition

        from spillwatch.kafka import make_consumer

        self.c = make_consumer(settings, [], group_id=None, enable_auto_commit=False)
        parts = wait_until(lambda: self.c.partitions_for_topic(topic), 10)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.c.assign(tps)
        self.c.seek_to_beginning(*tps)
        self.values: list[bytes] = []

    def poll(self) -> list[bytes]:
        for recs in self.c.poll(timeout_ms=200, max_records=1000).values():
            self.values.extend(r.value for r in recs)
        return self.values

    def until(self, pred: Any, timeout_s: float) -> list[bytes]:
        return wait_until(lambda: pred(self.poll()) and self.values, timeout_s, 0.05)

    def close(self) -> None:
        self.c.close()


@pytest.mark.timeout(90)
def test_worker_classifies_every_frame_and_dead_letters_bad_ones(stack_settings: Settings, procs: Procs) -> None:
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

    out = Tail(s, t.classifications)
    try:
        got = out.until(lambda v: len(v) >= len(sent), 60)
        events = [Classification.from_bytes(v) for v in got]
        assert {(e.camera_id, e.seq) for e in events} == sent  # one per good frame, no bad ones
        for e in events:
            assert e.model_version == "tiny-test-1" and e.worker.endswith(str(worker.pid))
            assert (e.spill_prob > 0.9) == (e.camera_id == "cam-a")
            assert e.capture_time == T0 + timedelta(seconds=e.seq / 2)
        dead = [DeadLetter.from_bytes(r.value) for r in consume_all(s, t.dead_letter(t.frames), 20, min_count=4)]
        reasons = {d.key: d.reason for d in dead}
        assert set(reasons) == {f"bad-{n}" for n in bad}
        assert "decode" in reasons["bad-corrupt"]
        assert "too large" in reasons["bad-oversized"]
        assert "bad magic" in reasons["bad-malformed"]
        assert "v:" in reasons["bad-version"]
        assert all(d.service == "classifier" and d.source_topic == t.frames for d in dead)
        assert next(d for d in dead if d.key == "bad-malformed").payload() == bad["malformed"]
        # still running and still classifying after the bad records
        assert worker.poll() is None
        prod.send(t.frames, key=b"cam-z", value=frame("cam-z", 0, clean_jpeg()))
        prod.flush()
        out.until(lambda v: any(Classification.from_bytes(x).camera_id == "cam-z" for x in v), 30)
        assert worker.poll() is None
    finally:
        out.close()
        prod.close()


def cls_bytes(cam: str, seq: int, prob: float) -> bytes:
    return Classification(
        camera_id=cam, seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), spill_prob=prob, model_version="tiny-test-1"
    ).to_bytes()


@pytest.mark.timeout(90)
def test_aggregator_one_alert_per_incident_under_redelivery(stack_settings: Settings, procs: Procs) -> None:
    from spillwatch.kafka import make_producer

    s, t = stack_settings, stack_settings.topics
    cams = [{"id": c, "source": "x"} for c in ("spill", "clean")]
    agg = procs.start("aggregator", SPILLWATCH_CAMERAS=json.dumps(cams))
    prod = make_producer(s)
    spill = [0.1] * 4 + [0.9] * 12
    for rnd in range(2):  # the second round is a full redelivery of the first
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
    alerts = [SpillAlert.from_bytes(r.value) for r in consume_all(s, t.spill_alerts, 10, min_count=1)]
    time.sleep(2.0)  # anything extra (a duplicate page) would show up by now
    alerts = [SpillAlert.from_bytes(r.value) for r in consume_all(s, t.spill_alerts, 10, min_count=0)]
    assert [(a.camera_id, a.state.value) for a in alerts] == [("spill", "confirmed")]
    a = alerts[0]
    assert a.evidence.confirming_seq == 6 and a.first_seen == T0 + timedelta(seconds=2)
    assert a.model_version == "tiny-test-1"
    assert agg.poll() is None


@pytest.mark.timeout(150)
def test_sigkill_classifier_mid_stream_incident_confirmed_exactly_once(stack_settings: Settings, procs: Procs) -> None:
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
    out = Tail(s, t.classifications)
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
            workers_seen = {Classification.from_bytes(v).worker.rsplit("-", 1)[1] for v in out.poll()}
        # kill the worker that classifies k0 (a spill camera), mid-stream, just before the onset
        k0_worker = [Classification.from_bytes(v) for v in out.values if b'"k0"' in v][-1].worker.rsplit("-", 1)[1]
        victim = by_pid[k0_worker]
        for seq in range(seq, n):
            for cam in cams:
                prod.send(t.frames, key=cam.encode(), value=frame(cam, seq, jpegs[cam in spill_cams and seq >= onset]))
            prod.flush()
            if seq == onset - 2:
                victim.send_signal(signal.SIGKILL)
            time.sleep(0.05)
        victim.wait(10)
        survivor = w2 if victim is w1 else w1
        # every frame is classified (by someone) despite the kill
        want = {(c, q) for c in cams for q in range(onset - 10, n)}
        out.until(lambda v: want <= {(e.camera_id, e.seq) for e in map(Classification.from_bytes, v)}, 60)
        assert survivor.poll() is None
        after = [e for e in map(Classification.from_bytes, out.values) if e.camera_id == "k0" and e.seq >= onset]
        assert after and all(e.worker.endswith(f"-{survivor.pid}") for e in after)  # taken over
    finally:
        out.close()
        prod.close()
    alerts = [SpillAlert.from_bytes(r.value) for r in consume_all(s, t.spill_alerts, 30, min_count=2)]
    time.sleep(2.0)
    alerts = [SpillAlert.from_bytes(r.value) for r in consume_all(s, t.spill_alerts, 10, min_count=0)]
    confirmed = sorted((a.camera_id, a.evidence.confirming_seq) for a in alerts if a.state.value == "confirmed")
    assert [c for c, _ in confirmed] == sorted(spill_cams), alerts
    for _, confirming in confirmed:
        assert onset + 2 <= confirming <= onset + 4
    snaps = [a.evidence.snapshot_ref for a in alerts]
    assert all(ref and Path(ref).is_file() for ref in snaps)


@pytest.mark.timeout(120)
def test_sigkill_aggregator_mid_incident_state_survives_in_redis(
    stack_settings: Settings, procs: Procs, redis_client: Any
) -> None:
    from spillwatch.redis_keys import RedisKeys
    from spillwatch.kafka import make_producer

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
    agg1.send_signal(signal.SIGKILL)
    agg1.wait(10)
    # a fresh aggregator picks up where the dead one left (its offsets may be behind: redelivery)
    agg2 = procs.start("aggregator")
    for seq in range(6, 12):
        prod.send(t.classifications, key=b"cam-k", value=cls_bytes("cam-k", seq, 0.9))
    prod.flush()
    prod.close()
    consume_all(s, t.spill_alerts, 60, min_count=1)
    time.sleep(2.0)
    alerts = [SpillAlert.from_bytes(r.value) for r in consume_all(s, t.spill_alerts, 10, min_count=0)]
    assert [(a.state.value, a.evidence.confirming_seq) for a in alerts] == [("confirmed", 6)]
    # the window spanned the kill: the incident starts at the first spill frame seen before it
    assert alerts[0].first_seen == T0 + timedelta(seconds=2)
    assert agg2.poll() is None
