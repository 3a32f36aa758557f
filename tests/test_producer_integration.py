"""Producers against the real local broker: files, folders that vanish, broker restarts, limits."""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from devstack.stack import LocalStack
from producers.runner import run_cameras
from spillwatch.events import CameraHealth, CameraState, decode_frame
from spillwatch.kafka import create_topics
from spillwatch.settings import CameraConfig, Settings
from tests.helpers import TopicTail, consume_all, make_video, read_to_end, wait_until

pytestmark = [pytest.mark.integration]


def _with(settings: Settings, **producer: object) -> Settings:
    return settings.model_copy(update={"producer": settings.producer.model_copy(update=producer)})


def _health(records: list) -> list[CameraHealth]:
    return [CameraHealth.from_bytes(r.value) for r in records]


@pytest.mark.timeout(60)
def test_video_file_frames_on_topic_fast(stack_settings: Settings, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", n_frames=30, fps=10, size=(1280, 720))  # 3 s
    cam = CameraConfig(id="dock-1", source=str(video), fps=2, max_width=320, jpeg_quality=80)
    stats = run_cameras(stack_settings, [cam], speed=None)
    st = stats["dock-1"]
    assert st.sampled == 6 and st.published == 6 and not st.dropped and st.ended == "source ended"

    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    assert len(recs) == 6 and {r.key for r in recs} == {b"dock-1"}
    assert len({r.partition for r in recs}) == 1  # keyed by camera: one partition, in order
    frames = [decode_frame(r.value) for r in sorted(recs, key=lambda r: r.offset)]
    seqs = [f.header.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + 6))
    # --speed 0 keeps the clip's timeline: capture times 0.5 s apart
    caps = [f.header.capture_time.timestamp() for f in frames]
    assert np.allclose(np.diff(caps), 0.5, atol=1e-3)
    for f in frames:
        h = f.header
        assert (h.width, h.height) == (320, 180) and h.camera_id == "dock-1" and h.source_uri == str(video)
        assert h.capture_time.utcoffset().total_seconds() == 0
        img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (180, 320, 3)
    # the moving square moves: the first and last frames differ
    a, b = (cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE) for f in (frames[0], frames[-1]))
    assert (np.abs(a.astype(int) - b.astype(int)) > 50).sum() > 300  # two 15x15 squares at 1/4 scale

    health = _health(read_to_end(stack_settings, stack_settings.topics.camera_health))
    states = [(h.state, h.error) for h in health if h.camera_id == "dock-1"]
    assert states[0][0] == CameraState.ONLINE
    assert states[-1] == (CameraState.OFFLINE, "source ended")


@pytest.mark.timeout(60)
def test_video_file_real_time_pace_and_wall_clock_capture(stack_settings: Settings, tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10)  # 2 s
    cam = CameraConfig(id="rt", source=str(video), fps=4)
    t0 = time.time()
    stats = run_cameras(stack_settings, [cam], speed=1.0)
    elapsed = time.time() - t0
    assert stats["rt"].published == 8
    assert 1.6 <= elapsed <= 6, elapsed  # 8 samples 0.25 s apart: ~1.75 s of pacing
    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    caps = sorted(decode_frame(r.value).header.capture_time.timestamp() for r in recs)
    assert caps[0] >= t0 - 0.01 and caps[-1] <= time.time()
    gaps = np.diff(caps)
    assert np.all(np.abs(gaps - 0.25) < 0.12), gaps


@pytest.mark.timeout(90)
def test_folder_that_disappears_goes_offline_after_grace_and_comes_back(stack_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    for i in range(3):
        img = np.full((240, 320, 3), 40 * (i + 1), np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), img)
    settings = _with(
        stack_settings, stall_after_s=1.0, offline_after_s=2.5, heartbeat_s=0.5, reconnect_initial_s=0.2, reconnect_max_s=0.5
    )
    cam = CameraConfig(id="lobby", source=f"folder:{folder}", fps=5, loop=True)
    stop = threading.Event()
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(run_cameras(settings, [cam], stop, speed=1.0)))
    th.start()
    tail = TopicTail(settings, settings.topics.camera_health)
    try:
        tail.wait_for(lambda rs: any(h.state == CameraState.ONLINE for h in _health(rs)), 15)
        time.sleep(0.5)
        gone = tmp_path / "cam-away"
        folder.rename(gone)
        t_gone = time.time()
        off = tail.wait_for(
            lambda rs: [h for h in _health(rs) if h.state == CameraState.OFFLINE and h.at.timestamp() > t_gone], 20
        )[0]
        # offline only after the grace period without a frame (not at the first failed read)
        assert off.last_frame_time is not None
        assert (off.at - off.last_frame_time).total_seconds() >= 2.5
        assert off.at.timestamp() - t_gone < 2.5 + 1.5
        assert off.error and "folder" in off.error
        states = [h.state for h in _health(tail.records) if h.at.timestamp() > t_gone]
        assert CameraState.STALLED in states[: states.index(CameraState.OFFLINE)]  # stalled came first
        assert th.is_alive()
        gone.rename(folder)
        t_back = time.time()
        back = tail.wait_for(
            lambda rs: [h for h in _health(rs) if h.state == CameraState.ONLINE and h.at.timestamp() > t_back], 15
        )[0]
        assert back.at.timestamp() - t_back < 3  # reconnect backoff capped at 0.5 s
    finally:
        stop.set()
        th.join(20)
        tail.close()
    assert not th.is_alive()
    st = result["lobby"]
    assert st.reconnects >= 1 and st.ended == "producer stopped"
    frames = [decode_frame(r.value) for r in read_to_end(settings, settings.topics.frames)]
    seqs = sorted(f.header.seq for f in frames)
    assert len(frames) == st.published and seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # seq continues


@pytest.mark.timeout(120)
def test_broker_restart_does_not_crash_the_producer(tmp_path: Path) -> None:
    video = make_video(tmp_path / "loop.mp4", n_frames=20, fps=10)
    with LocalStack(with_redis=False) as stack:
        settings = Settings(
            kafka={"bootstrap": stack.bootstrap, "topic_prefix": "restart.", "partitions": 2},
            producer={"reconnect_initial_s": 0.2, "reconnect_max_s": 1.0, "offline_after_s": 60, "stall_after_s": 30},
        )
        create_topics(settings)
        cam = CameraConfig(id="loop", source=str(video), fps=5, loop=True)
        stop = threading.Event()
        result: dict = {}
        th = threading.Thread(target=lambda: result.update(run_cameras(settings, [cam], stop, speed=1.0)))
        th.start()
        try:
            wait_until(lambda: len(consume_all(settings, settings.topics.frames, timeout_s=2, min_count=3)) >= 3, 20)
            stack.restart_broker()  # memory storage: topics and records are gone
            create_topics(settings)
            t_restart = time.time()
            recs = wait_until(
                lambda: (r := consume_all(settings, settings.topics.frames, timeout_s=2, min_count=5)) and len(r) >= 5 and r,
                45,
            )
            assert th.is_alive()
            after = [decode_frame(r.value).header for r in recs]
            assert all(h.capture_time.timestamp() > t_restart - 35 for h in after)
        finally:
            stop.set()
            th.join(30)
    assert not th.is_alive()
    st = result["loop"]
    assert st.published >= 8 and st.ended == "producer stopped"


@pytest.mark.timeout(60)
def test_oversized_frames_are_dropped_and_counted(stack_settings: Settings, tmp_path: Path) -> None:
    from spillwatch import metrics

    video = make_video(tmp_path / "noise.mp4", n_frames=10, fps=10, noise=True)
    settings = _with(stack_settings, max_frame_bytes=20_000)
    cam = CameraConfig(id="noisy", source=str(video), fps=10, max_width=640, jpeg_quality=95)
    before = metrics.FRAMES_DROPPED.labels("noisy", "oversized")._value.get()
    stats = run_cameras(settings, [cam], speed=None)
    st = stats["noisy"]
    assert st.sampled == 10 and st.published == 0 and st.dropped == {"oversized": 10}
    assert metrics.FRAMES_DROPPED.labels("noisy", "oversized")._value.get() - before == 10
    assert read_to_end(settings, settings.topics.frames) == []  # every record the topic holds: none


@pytest.mark.timeout(60)
def test_many_cameras_one_process_and_a_bad_one(stack_settings: Settings, tmp_path: Path) -> None:
    video = make_video(tmp_path / "c.mp4", n_frames=10, fps=10)
    cams = [CameraConfig(id=f"cam-{i}", source=str(video), fps=5) for i in range(4)]
    cams.append(CameraConfig(id="broken", source=str(tmp_path / "missing.mp4"), fps=5))
    stop = threading.Event()
    threading.Timer(8, stop.set).start()  # the missing file never ends by itself
    stats = run_cameras(_with(stack_settings, reconnect_initial_s=0.2, reconnect_max_s=0.5), cams, stop, speed=None)
    stop.set()
    for i in range(4):
        assert stats[f"cam-{i}"].published == 5 and stats[f"cam-{i}"].ended == "source ended"
    assert stats["broken"].published == 0 and stats["broken"].reconnects >= 2
    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    assert sorted({r.key for r in recs}) == [f"cam-{i}".encode() for i in range(4)]


@pytest.mark.timeout(90)
def test_http_camera_that_stops_goes_offline_and_reconnects(stack_settings: Settings) -> None:
    from tests.helpers import MjpegServer

    server = MjpegServer(fps=10).start()
    settings = _with(
        stack_settings, stall_after_s=1.0, offline_after_s=2.0, heartbeat_s=0.5, reconnect_initial_s=0.2, reconnect_max_s=0.5
    )
    cam = CameraConfig(id="http-cam", source=server.url, fps=2)
    stop = threading.Event()
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(run_cameras(settings, [cam], stop)))
    th.start()
    tail = TopicTail(settings, settings.topics.camera_health)
    try:
        tail.wait_for(lambda rs: any(h.state == CameraState.ONLINE for h in _health(rs)), 15)
        time.sleep(1.5)
        server.stop()
        t_gone = time.time()
        tail.wait_for(lambda rs: any(h.state == CameraState.OFFLINE and h.at.timestamp() > t_gone for h in _health(rs)), 15)
        server.start()  # same port
        t_back = time.time()
        tail.wait_for(lambda rs: any(h.state == CameraState.ONLINE and h.at.timestamp() > t_back for h in _health(rs)), 15)
        time.sleep(1.5)
    finally:
        stop.set()
        th.join(20)
        tail.close()
        server.stop()
    st = result["http-cam"]
    assert st.reconnects >= 1 and st.published >= 4
    frames = [decode_frame(r.value) for r in read_to_end(settings, settings.topics.frames)]
    caps = sorted(f.header.capture_time.timestamp() for f in frames)
    # live: sampled at ~2 fps by wall clock (the camera sends 10), never faster than the set rate
    before_gap = [c for c in caps if c < t_gone]
    assert len(before_gap) >= 3 and min(np.diff(before_gap)) >= 0.5 - 0.11
    assert frames[0].header.source_uri == server.url


@pytest.mark.timeout(60)
def test_produce_cli_exits_cleanly_on_sigterm(stack_settings: Settings, tmp_path: Path) -> None:
    import json

    from spillwatch.settings import CameraConfig
    from spillwatch.supervisor import ServiceGroup

    video = make_video(tmp_path / "loop.mp4", n_frames=20, fps=10)
    settings = stack_settings.model_copy(update={"cameras": [CameraConfig(id="cli-1", source=str(video), fps=5, loop=True)]})
    out = tmp_path / "stats.json"
    with ServiceGroup(settings, tmp_path / "logs") as group:
        proc = group.start(["produce", "--out", str(out)])
        wait_until(lambda: len(consume_all(stack_settings, stack_settings.topics.frames, timeout_s=2, min_count=5)) >= 5, 30)
        code = proc.stop(grace_s=20)
    output = proc.log_text()
    assert code == 0, output[-2000:]
    stats = json.loads(out.read_text())["cli-1"]
    assert stats["ended"] == "producer stopped" and stats["published"] >= 5
    assert stats["published"] == stats["sampled"]  # flushed: nothing lost at shutdown
    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    assert len(recs) == stats["published"]


@pytest.mark.timeout(60)
def test_produce_cli_max_frames_ends_by_itself(stack_settings: Settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import yaml

    video = make_video(tmp_path / "loop.mp4", n_frames=20, fps=10)
    cfg = tmp_path / "cams.yaml"
    cams = [{"id": f"m{i}", "source": str(video), "fps": 5, "loop": True} for i in range(2)]
    cfg.write_text(yaml.safe_dump({"cameras": cams}))
    env = {
        **os.environ,
        "SPILLWATCH_KAFKA__BOOTSTRAP": stack_settings.kafka.bootstrap,
        "SPILLWATCH_KAFKA__TOPIC_PREFIX": stack_settings.kafka.topic_prefix,
    }
    res = subprocess.run(
        [sys.executable, "-m", "spillwatch.cli", "produce", "--config", str(cfg), "--camera", "m1", "--speed", "0", "--max-frames", "7"],
        env=env, capture_output=True, timeout=45,
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert "m1: sampled 7, published 7" in res.stdout.decode()
    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    assert len(recs) == 7 and {r.key for r in recs} == {b"m1"}


@pytest.mark.timeout(90)
def test_preloaded_clips_many_cameras_match_decoding_and_are_cheap(
    stack_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producers.sources import VideoFileSource

    video = make_video(tmp_path / "clip.mp4", n_frames=40, fps=20, size=(1280, 720))  # 2 s
    normal = run_cameras(stack_settings, [CameraConfig(id="ref", source=str(video), fps=2)], speed=None)["ref"]
    cams = [CameraConfig(id=f"p{i:02d}", source=str(video), fps=2, loop=True) for i in range(40)]
    # cheap = the clip is decoded once for all cameras and loops: count file opens and decodes
    opened, decoded = [], []
    real_open, real_decode = VideoFileSource.open, VideoFileSource.decode_last
    monkeypatch.setattr(VideoFileSource, "open", lambda self: (opened.append(1), real_open(self))[1])
    monkeypatch.setattr(VideoFileSource, "decode_last", lambda self: (decoded.append(1), real_decode(self))[1])
    stats = run_cameras(stack_settings, cams, speed=4.0, max_frames=12, preload=True)  # 3 loops, 1.5 s
    assert all(s.published == 12 and s.ended == "max frames reached" for s in stats.values())
    assert (len(opened), len(decoded)) == (1, normal.published)  # 40 cameras x 12 frames: one pass over the clip
    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    by_cam: dict[str, list] = {}
    for r in recs:
        f = decode_frame(r.value)
        by_cam.setdefault(f.header.camera_id, []).append(f)
    ref = sorted(by_cam["ref"], key=lambda f: f.header.seq)
    p00 = sorted(by_cam["p00"], key=lambda f: f.header.seq)
    assert normal.published == 4 and [f.jpeg for f in p00[:4]] == [f.jpeg for f in ref]  # same bytes
    assert [f.jpeg for f in p00[4:8]] == [f.jpeg for f in ref]  # looping
    caps = [f.header.capture_time.timestamp() for f in p00]
    assert all(b > a for a, b in pairwise(caps))  # capture time keeps increasing across loops


@pytest.mark.timeout(60)
@pytest.mark.parametrize("preload", [False, True])
def test_bundled_demo_clips_carry_their_ground_truth(stack_settings: Settings, preload: bool) -> None:
    clips = Path(__file__).resolve().parent.parent / "samples" / "clips"
    cams = [CameraConfig(id=name, source=str(clips / f"{name}.mp4"), fps=2) for name in ("spill", "clean")]
    stats = run_cameras(stack_settings, cams, speed=None, preload=preload)
    assert {k: v.published for k, v in stats.items()} == {"spill": 48, "clean": 48}  # 24 s at 2 fps
    recs = read_to_end(stack_settings, stack_settings.topics.frames)
    frames = sorted((decode_frame(r.value) for r in recs), key=lambda f: (f.header.camera_id, f.header.seq))
    assert len(frames) == 96
    for cam in ("spill", "clean"):
        fs = [f for f in frames if f.header.camera_id == cam]
        t0 = fs[0].header.capture_time
        for f in fs:
            assert (f.header.width, f.header.height) == (480, 360)
            t = (f.header.capture_time - t0).total_seconds()  # --speed 0 keeps the clip's timeline
            want = "spill" if cam == "spill" and t >= 6.0 - 1e-3 else "clean"
            assert f.header.label == want, (cam, t, f.header.label)
    assert sum(f.header.label == "spill" for f in frames) == 36  # 6.0 s .. 24 s at 2 fps
