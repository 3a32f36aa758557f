"""Pure producer logic: sampling, pacing, backoff, camera-health states, downsizing, sources."""

from __future__ import annotations

import random

import numpy as np
import pytest

from producers.backoff import Backoff
from producers.health import HealthTracker
from producers.sampling import Pacer, RateSampler, scaled_size
from spillwatch.events import CameraState


def _taken(fps: float, times: list[float]) -> list[float]:
    s = RateSampler(fps)
    return [t for t in times if s.offer(t)]


def test_sampler_30fps_to_2fps_keeps_rate_without_drift() -> None:
    times = [i / 30 for i in range(30 * 60)]  # one minute at 30 fps
    taken = _taken(2, times)
    assert len(taken) == 120
    gaps = np.diff(taken)
    assert np.allclose(gaps, 0.5, atol=1e-6)


def test_sampler_25fps_to_2fps_has_no_drift_over_an_hour() -> None:
    times = [i / 25 for i in range(25 * 3600)]
    taken = _taken(2, times)
    assert len(taken) == 7200
    assert max(np.diff(taken)) <= 0.5 + 1 / 25 + 1e-9  # never more than one source frame late


def test_sampler_takes_every_frame_of_a_slow_source_and_realigns_after_a_gap() -> None:
    assert _taken(5, [0, 1, 2, 3]) == [0, 1, 2, 3]
    taken = _taken(2, [0, 0.5, 1.0, 10.0, 10.1, 10.5, 10.9, 11.0])
    assert taken == [0, 0.5, 1.0, 10.0, 10.5, 11.0]  # no burst to "catch up" after the gap


def test_sampler_restarts_when_time_goes_backwards() -> None:
    s = RateSampler(2)
    assert [s.offer(t) for t in (0, 0.5, 1.0)] == [True, True, True]
    assert s.offer(0.0) and not s.offer(0.1) and s.offer(0.5)


def test_sampler_rejects_bad_fps() -> None:
    with pytest.raises(ValueError):
        RateSampler(0)


def test_pacer_real_time_double_speed_and_fast() -> None:
    p = Pacer(1.0)
    assert p.delay(10.0, now=100.0) == 0  # the clock starts at the first frame
    assert p.delay(12.0, now=100.5) == pytest.approx(1.5)
    assert p.delay(12.0, now=103.0) == 0  # late: no wait, no negative
    assert Pacer(2.0).delay(0, 0) == 0
    p2 = Pacer(2.0)
    p2.delay(0, 0)
    assert p2.delay(4.0, 0) == pytest.approx(2.0)
    assert Pacer(None).delay(1000.0, 0) == 0


def test_backoff_grows_exponentially_caps_and_resets() -> None:
    b = Backoff(initial=1, maximum=10, factor=2, jitter=0)
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    b.reset()
    assert b.next_delay() == 1


def test_backoff_jitter_stays_within_bounds() -> None:
    b = Backoff(initial=1, maximum=4, jitter=0.2, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(50)]
    assert 0.8 <= delays[0] <= 1.2
    assert all(d <= 4 for d in delays) and min(delays[5:]) >= 3.2
    assert len(set(delays)) > 10  # actually jittered (no thundering herd of reconnects)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)


def _tracker(start: float = 0.0) -> HealthTracker:
    return HealthTracker(stall_after_s=5, offline_after_s=15, heartbeat_s=2, start=start)


def test_health_online_stalled_offline_and_back() -> None:
    tr = _tracker()
    assert tr.tick(1.0) is None  # unknown yet: nothing to say
    rep = tr.on_frame(1.0)
    assert rep is not None and rep.state == CameraState.ONLINE and rep.changed
    assert tr.on_frame(1.5) is None  # no transition
    assert tr.tick(2.0) is None  # heartbeat not due (last emit at 1.0)
    hb = tr.tick(3.1)
    assert hb is not None and hb.state == CameraState.ONLINE and not hb.changed
    tr.on_error(4.0, "connection reset")
    hb2 = tr.tick(6.4)  # 4.9 s of silence: still online (a heartbeat is due)
    assert hb2 is not None and hb2.state == CameraState.ONLINE and not hb2.changed
    st = tr.tick(6.6)
    assert st is not None and st.state == CameraState.STALLED and st.changed and st.error == "connection reset"
    assert tr.tick(16.4) is not None and tr.state == CameraState.STALLED  # heartbeat, still stalled
    off = tr.tick(16.6)
    assert off is not None and off.state == CameraState.OFFLINE and off.changed
    back = tr.on_frame(30.0)
    assert back is not None and back.state == CameraState.ONLINE and back.changed and back.error is None
    assert back.frames == 3


def test_health_source_never_opens_goes_offline_after_grace_from_start() -> None:
    tr = _tracker(start=100.0)
    states = [r.state for t in np.arange(100, 130, 0.25) if (r := tr.tick(float(t))) is not None and r.changed]
    assert states == [CameraState.STALLED, CameraState.OFFLINE]


def test_health_heartbeats_repeat_the_state_every_interval() -> None:
    tr = _tracker()
    tr.on_frame(0.0)
    beats = []
    for i in range(1, 41):  # 4 s with frames every 0.1 s
        t = i / 10
        tr.on_frame(t)
        if tr.tick(t) is not None:
            beats.append(t)
    assert beats == pytest.approx([2.0, 4.0])


def test_health_end_of_source_reports_offline_with_reason_and_then_stays_quiet() -> None:
    tr = _tracker()
    tr.on_frame(0.0)
    end = tr.on_end(1.0, "source ended")
    assert end is not None and end.state == CameraState.OFFLINE and end.error == "source ended"
    assert tr.tick(100.0) is None


def test_health_fps_estimate() -> None:
    tr = _tracker()
    for i in range(40):
        tr.on_frame(i * 0.5)
    assert tr.fps(19.5) == pytest.approx(2.0, abs=0.15)
    assert tr.fps(40.0) == 0.0


def test_scaled_size_keeps_aspect_and_never_upscales() -> None:
    assert scaled_size(1920, 1080, 480) == (480, 270)
    assert scaled_size(640, 480, 480) == (480, 360)
    assert scaled_size(320, 240, 480) == (320, 240)
    assert scaled_size(10000, 1, 480) == (480, 1)


def test_downsize_and_jpeg_roundtrip() -> None:
    import cv2

    from producers.imaging import downsize, encode_jpeg

    img = np.zeros((1080, 1920, 3), np.uint8)
    img[:, :960] = (0, 0, 255)
    small = downsize(img, 480)
    assert small.shape == (270, 480, 3)
    jpeg = encode_jpeg(small, 85)
    back = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == (270, 480, 3)
    assert back[135, 100, 2] > 200 and back[135, 400, 2] < 50  # left half still red, right black
    assert downsize(small, 640) is small


def test_source_dispatch_and_redaction() -> None:
    from producers.sources import FolderSource, StreamSource, VideoFileSource, open_source, redact

    assert isinstance(open_source("folder:/x", fps=2), FolderSource)
    assert isinstance(open_source("device:0", fps=2), StreamSource)
    assert isinstance(open_source("rtsp://u:p@10.0.0.5/s1", fps=2), StreamSource)
    assert isinstance(open_source("http://cam/video.mjpg", fps=2), StreamSource)
    assert isinstance(open_source("/clips/a.mp4", fps=2, loop=True), VideoFileSource)
    assert redact("rtsp://admin:secret@10.0.0.5:554/s1") == "rtsp://***@10.0.0.5:554/s1"
    assert redact("/clips/a.mp4") == "/clips/a.mp4"


def test_missing_file_and_folder_are_source_errors(tmp_path: object) -> None:
    from producers.sources import FolderSource, SourceError, VideoFileSource

    with pytest.raises(SourceError):
        VideoFileSource(f"{tmp_path}/nope.mp4").open()
    with pytest.raises(SourceError):
        FolderSource(f"{tmp_path}/nope", fps=2).open()


def test_sidecar_labels_only_when_well_formed(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from producers.sources import sidecar_labels

    d = Path(str(tmp_path))
    assert sidecar_labels(d / "a.mp4") is None
    (d / "a.json").write_text(json.dumps({"labels": ["clean", "spill"]}))
    assert sidecar_labels(d / "a.mp4") == ["clean", "spill"]
    (d / "b.json").write_text(json.dumps({"labels": ["clean", "wet?"]}))
    assert sidecar_labels(d / "b.mp4") is None
    (d / "c.json").write_text("{not json")
    assert sidecar_labels(d / "c.mp4") is None
