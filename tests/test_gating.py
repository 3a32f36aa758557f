"""Change gating: the pure gate (noise, flicker, slow growth, refresh) and the classifier core with it
(reused results, ids and times of the new frame, learned suppression on reused frames)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from processors.bench_scenes import noisy_variants
from processors.classifier import Classifier
from processors.gating import ChangeGate, GateParams, block_difference, thumbnail_of_jpeg
from processors.suppression import FrameSuppressor, SuppressionCache
from spillwatch.events import Classification, FrameHeader, encode_frame
from spillwatch.model import SpillModel
from spillwatch.settings import Settings
from spillwatch.suppression import Entry, LearnedCell, entry_id, grid_of
from tests.helpers.tiny_model import build_tiny_model, clean_jpeg, frame_image, spill_jpeg, to_jpeg

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PARAMS = GateParams(refresh_s=10.0, threshold=0.3, min_blocks=1)


def scene(width: int = 480, height: int = 360) -> np.ndarray:
    """A textured floor with some structure (shelves, a doorway), BGR."""
    rng = np.random.default_rng(3)
    img = np.full((height, width, 3), 110, np.uint8)
    img[: height // 3] = (70, 80, 90)
    img[: height // 2, width // 2 : width // 2 + 40] = (180, 180, 170)
    return np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)


def with_stain(img: np.ndarray, radius: float) -> np.ndarray:
    """A dark liquid stain of ``radius`` pixels on the floor (centre bottom third)."""
    out = img.copy()
    if radius > 0:
        h, w = img.shape[:2]
        cv2.ellipse(out, (w // 2, int(h * 0.75)), (int(radius * 1.6), int(radius)), 0, 0, 360, (40, 55, 60), -1)
    return out


def thumb_of(jpeg: bytes) -> np.ndarray:
    return thumbnail_of_jpeg(jpeg)


# --------------------------------------------------------------------------- the pure gate


def test_noise_flicker_auto_exposure_and_jpeg_do_not_count_as_change() -> None:
    gate: ChangeGate[str] = ChangeGate(PARAMS)
    variants = noisy_variants(scene(), 12, seed=1)  # sensor noise, +-5 % gain, +-6 offset, JPEG
    gate.commit("cam", thumb_of(variants[0]), T0, None, result="r", hot=False)
    decisions = [gate.decide("cam", thumb_of(v), T0 + timedelta(seconds=0.5 * i), None) for i, v in enumerate(variants[1:], 1)]
    assert [d.reason for d in decisions] == ["unchanged"] * 11
    assert max(d.peak for d in decisions) < PARAMS.threshold / 2


def test_a_small_stain_is_a_change() -> None:
    gate: ChangeGate[str] = ChangeGate(PARAMS)
    base = scene()
    gate.commit("cam", thumb_of(to_jpeg(base)), T0, None, result="r", hot=False)
    d = gate.decide("cam", thumb_of(to_jpeg(with_stain(base, 14))), T0 + timedelta(seconds=1), None)
    assert d.classify and d.reason == "changed"  # a 45 x 28 px stain in a 480 x 360 frame


def test_slow_growth_adds_up_against_the_last_classified_frame() -> None:
    """Each step is far below the threshold frame to frame, yet the gate classifies again as the
    stain grows, because it compares with the last frame the model classified."""
    gate: ChangeGate[str] = ChangeGate(GateParams(refresh_s=1e6, threshold=0.3))
    base = scene()
    frames = [thumb_of(to_jpeg(with_stain(base, 0.25 * i))) for i in range(0, 200)]  # +0.25 px radius a frame
    steps = [float(block_difference(a, b).max()) for a, b in pairwise(frames)]
    assert max(steps) < PARAMS.threshold  # frame-to-frame comparison would never fire
    gate.commit("cam", frames[0], T0, None, result="r", hot=False)
    classified = []
    for i, t in enumerate(frames[1:], 1):
        at = T0 + timedelta(seconds=0.5 * i)
        if gate.decide("cam", t, at, None).classify:
            classified.append(i)
            gate.commit("cam", t, at, None, result="r", hot=False)
    assert classified and classified[0] <= 80  # the stain is caught by 20 px radius at the latest
    assert len(classified) >= 3  # and again as it keeps growing


def test_refresh_hot_epoch_and_redelivery_always_classify() -> None:
    gate: ChangeGate[str] = ChangeGate(PARAMS)
    t = thumb_of(to_jpeg(scene()))
    assert gate.decide("cam", t, T0, 1).reason == "first"
    gate.commit("cam", t, T0, 1, result="r", hot=False)
    assert gate.decide("cam", t, T0 + timedelta(seconds=9.9), 1).reason == "unchanged"
    assert gate.decide("cam", t, T0 + timedelta(seconds=10), 1).reason == "refresh"
    assert gate.decide("cam", t, T0 + timedelta(seconds=1), 2).reason == "epoch"  # producer restarted
    assert gate.decide("cam", t, T0 - timedelta(seconds=1), 1).reason == "older"  # redelivered
    gate.commit("cam", t, T0, 1, result="r", hot=True)  # a suspicion: judged on fresh inferences
    assert gate.decide("cam", t, T0 + timedelta(seconds=1), 1).reason == "hot"


def test_one_low_score_after_a_hot_one_does_not_freeze_the_camera_until_the_hold_ends() -> None:
    """A rising score is noisy: one result just under the hot level must not hand the camera to the
    refresh interval (with a low model threshold the hot level lies near clean scores)."""
    gate: ChangeGate[str] = ChangeGate(PARAMS)  # hot_hold_s 5 s by default
    t = thumb_of(to_jpeg(scene()))
    assert gate.commit("cam", t, T0, 1, result="hot", hot=True)
    assert gate.commit("cam", t, T0 + timedelta(seconds=1), 1, result="dip", hot=False)  # still held
    assert gate.decide("cam", t, T0 + timedelta(seconds=1.5), 1).reason == "hot"
    assert gate.decide("cam", t, T0 + timedelta(seconds=4.9), 1).reason == "hot"
    assert not gate.commit("cam", t, T0 + timedelta(seconds=5), 1, result="cold", hot=False)
    assert gate.decide("cam", t, T0 + timedelta(seconds=5.5), 1).reason == "unchanged"
    gate.commit("cam", t, T0 + timedelta(seconds=6), 1, result="hot", hot=True)
    gate.commit("cam", t, T0 + timedelta(seconds=7), 2, result="cold", hot=False)  # producer restarted: no hold
    assert gate.decide("cam", t, T0 + timedelta(seconds=7.5), 2).reason == "unchanged"
    off: ChangeGate[str] = ChangeGate(GateParams(refresh_s=10.0, threshold=0.3, min_blocks=1, hot_hold_s=0.0))
    off.commit("cam", t, T0, 1, result="hot", hot=True)
    off.commit("cam", t, T0 + timedelta(seconds=1), 1, result="dip", hot=False)
    assert off.decide("cam", t, T0 + timedelta(seconds=1.5), 1).reason == "unchanged"


WARM = GateParams(refresh_s=10.0, threshold=0.3, min_blocks=1, warm_threshold=0.1)


def test_a_warm_camera_is_held_to_the_stricter_threshold_and_still_reuses_within_noise() -> None:
    """A warm score (towards the threshold, not near it) sends a change under the plain threshold to
    the model; sensor noise, flicker and JPEG still reuse the result."""
    base = scene()
    t0, stained = thumb_of(to_jpeg(base)), thumb_of(to_jpeg(with_stain(base, 9)))
    assert WARM.warm_threshold <= float(block_difference(stained, t0).max()) < WARM.threshold  # a faint stain
    at = T0 + timedelta(seconds=1)
    cold: ChangeGate[str] = ChangeGate(WARM)
    cold.commit("cam", t0, T0, None, result="r", hot=False)
    assert cold.decide("cam", stained, at, None).reason == "unchanged"
    warm: ChangeGate[str] = ChangeGate(WARM)
    assert not warm.commit("cam", t0, T0, None, result="r", hot=False, warm=True)  # warm is not hot
    assert warm.decide("cam", stained, at, None).reason == "warm"
    noise = noisy_variants(base, 8, seed=4)
    assert [warm.decide("cam", thumb_of(v), at, None).reason for v in noise] == ["unchanged"] * 8
    every: ChangeGate[str] = ChangeGate(PARAMS)  # warm_threshold 0: a warm camera is classified on every frame
    every.commit("cam", t0, T0, None, result="r", hot=False, warm=True)
    assert every.decide("cam", t0, at, None).reason == "warm"


def test_a_warm_score_is_held_like_a_hot_one() -> None:
    gate: ChangeGate[str] = ChangeGate(WARM)  # hot_hold_s 5 s
    base = scene()
    t0, stained = thumb_of(to_jpeg(base)), thumb_of(to_jpeg(with_stain(base, 9)))
    gate.commit("cam", t0, T0, 1, result="warm", hot=False, warm=True)
    gate.commit("cam", t0, T0 + timedelta(seconds=1), 1, result="dip", hot=False)  # one cold score within the hold
    assert gate.decide("cam", stained, T0 + timedelta(seconds=4.9), 1).reason == "warm"
    assert gate.decide("cam", stained, T0 + timedelta(seconds=5), 1).reason == "unchanged"
    gate.commit("cam", t0, T0 + timedelta(seconds=6), 1, result="hot", hot=True)  # a hot score is warm too
    gate.commit("cam", t0, T0 + timedelta(seconds=11.5), 1, result="cold", hot=False)
    assert gate.decide("cam", stained, T0 + timedelta(seconds=12), 1).reason == "unchanged"


def test_a_warm_camera_catches_slow_growth_earlier() -> None:
    base = scene()
    frames = [thumb_of(to_jpeg(with_stain(base, 0.25 * i))) for i in range(0, 120)]

    def first_classified(warm: bool) -> int:
        gate: ChangeGate[str] = ChangeGate(GateParams(refresh_s=1e6, threshold=0.3, warm_threshold=0.1))
        gate.commit("cam", frames[0], T0, None, result="r", hot=False, warm=warm)
        return next(i for i, t in enumerate(frames[1:], 1) if gate.decide("cam", t, T0 + timedelta(seconds=0.5 * i), None).classify)

    assert first_classified(warm=True) < first_classified(warm=False)


def test_a_settled_camera_reuses_its_result_until_the_scene_changes_the_score_drops_or_the_refresh() -> None:
    gate: ChangeGate[str] = ChangeGate(WARM)  # warm_threshold 0.1, refresh 10 s, max_gap_s 30 s
    base = scene()
    t0, stained = thumb_of(to_jpeg(base)), thumb_of(to_jpeg(with_stain(base, 9)))  # faint: under the plain threshold
    noise = [thumb_of(v) for v in noisy_variants(base, 6, seed=4)]

    def high(at: float, n: int = 1, epoch: int = 1) -> None:
        for i in range(n):
            gate.commit("cam", t0, T0 + timedelta(seconds=at + 0.5 * i), epoch, result="spill", hot=True, high=True, settle_after=5)

    high(0, 4)  # four in a row: not yet
    assert gate.decide("cam", t0, T0 + timedelta(seconds=2), 1).reason == "hot"
    high(2)  # the fifth
    assert [gate.decide("cam", t, T0 + timedelta(seconds=3), 1).reason for t in noise] == ["settled"] * 6
    assert gate.decide("cam", stained, T0 + timedelta(seconds=3), 1).reason == "hot"  # a change: judged afresh
    assert gate.decide("cam", t0, T0 + timedelta(seconds=12), 1).reason == "refresh"
    gate.commit("cam", t0, T0 + timedelta(seconds=12), 1, result="spill", hot=True, high=True, settle_after=5)
    assert gate.decide("cam", t0, T0 + timedelta(seconds=13), 1).reason == "settled"  # still settled after the refresh
    gate.commit("cam", t0, T0 + timedelta(seconds=14), 1, result="lower", hot=True, high=False, settle_after=5)
    assert gate.decide("cam", t0, T0 + timedelta(seconds=14.5), 1).reason == "hot"  # a score under the settle level
    high(15, 4)
    assert gate.decide("cam", t0, T0 + timedelta(seconds=17), 1).reason == "hot"  # the streak starts again
    high(50, 1)  # more than max_gap_s after the last inferred frame: a new streak
    assert gate.decide("cam", t0, T0 + timedelta(seconds=50.5), 1).reason == "hot"
    high(60, 4, epoch=2)  # a restarted producer: a new streak
    assert gate.decide("cam", t0, T0 + timedelta(seconds=62), 2).reason == "hot"
    never: ChangeGate[str] = ChangeGate(WARM)
    for i in range(10):
        never.commit("cam", t0, T0 + timedelta(seconds=0.5 * i), 1, result="spill", hot=True, high=True, settle_after=0)
    assert never.decide("cam", t0, T0 + timedelta(seconds=5.5), 1).reason == "hot"


def test_references_are_bounded_least_recently_seen_first() -> None:
    gate: ChangeGate[str] = ChangeGate(GateParams(max_cameras=2))
    t = thumb_of(clean_jpeg())
    for cam in ("a", "b"):
        gate.commit(cam, t, T0, None, result=cam, hot=False)
    gate.decide("a", t, T0, None)  # "a" seen again: "b" is the oldest
    gate.commit("c", t, T0, None, result="c", hot=False)
    assert gate.reference("b") is None and gate.reference("a") is not None and len(gate) == 2


# --------------------------------------------------------------------------- the classifier with the gate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"))


def make_core(tiny: Path, suppressor: FrameSuppressor | None = None, **settings: object) -> Classifier:
    s = Settings(worker={"model_path": tiny}, **settings)  # type: ignore[arg-type]
    return Classifier(SpillModel.load(tiny, threads=1), s, "w-gate", suppressor)


def rec(cam: str, seq: int, jpeg: bytes, at: datetime, **kw: object) -> tuple[bytes, bytes]:
    h = FrameHeader(camera_id=cam, seq=seq, capture_time=at, width=320, height=240, **kw)
    return cam.encode(), encode_frame(h, jpeg)


def run(core: Classifier, frames: list[tuple[bytes, bytes]]) -> list[Classification]:
    out = []
    for r in frames:  # one record a batch, as a real-time camera arrives
        ok, bad = core.process([r], now=T0 + timedelta(hours=1))
        assert bad == []
        out += [c.event for c in ok]
    return out


def test_static_scene_reuses_the_last_result_with_the_new_frames_ids(tiny: Path) -> None:
    core = make_core(tiny)
    variants = noisy_variants(frame_image(), 8, seed=2)
    events = run(core, [rec("cam", i, variants[i % 8], T0 + timedelta(seconds=0.5 * i), label="clean") for i in range(24)])
    assert [e.seq for e in events] == list(range(24))  # every frame has its classification
    assert [e.inferred for e in events] == [True] + [False] * 19 + [True] + [False] * 3  # refreshed after 10 s
    first, reused = events[0], events[1]
    assert reused.capture_time == T0 + timedelta(seconds=0.5) and reused.label == "clean" and reused.inference_ms == 0
    assert (reused.spill_prob, reused.spill_map, reused.model_version) == (first.spill_prob, first.spill_map, first.model_version)
    assert core.counts == {"inferred": 2, "reused": 22}


def test_a_spill_appearing_is_classified_at_once_then_on_every_frame_until_it_settles(tiny: Path) -> None:
    """The onset is a change; the spill's frames are then inferred one by one until the aggregator's
    window (5) of them in a row scored well above the threshold (those alone confirm it); then the
    unchanged spill reuses its result, and anything that changes is inferred again."""
    core = make_core(tiny)
    frames = [clean_jpeg()] * 4 + [spill_jpeg()] * 9 + [clean_jpeg()]  # ... then someone cleans it up
    events = run(core, [rec("cam", i, j, T0 + timedelta(seconds=0.5 * i)) for i, j in enumerate(frames)])
    assert [e.inferred for e in events] == [True, False, False, False] + [True] * 5 + [False] * 4 + [True]
    assert all(e.spill_prob > 0.95 for e in events[4:13])
    every = make_core(tiny, gating={"settle_frames": 0})  # off: a spill camera is classified on every frame
    events = run(every, [rec("cam", i, j, T0 + timedelta(seconds=0.5 * i)) for i, j in enumerate(frames)])
    assert [e.inferred for e in events] == [True, False, False, False] + [True] * 10
    longer = make_core(tiny, aggregator={"window": 7, "confirm_k": 3})  # never fewer than the camera's window
    events = run(longer, [rec("cam", i, j, T0 + timedelta(seconds=0.5 * i)) for i, j in enumerate(frames)])
    assert [e.inferred for e in events] == [True, False, False, False] + [True] * 7 + [False] * 2 + [True]


def test_gating_off_classifies_every_frame(tiny: Path) -> None:
    core = make_core(tiny, gating={"enabled": False})
    events = run(core, [rec("cam", i, clean_jpeg(), T0 + timedelta(seconds=0.5 * i)) for i in range(5)])
    assert all(e.inferred for e in events) and core.gate is None


def test_frames_of_one_camera_in_one_batch_reuse_the_one_inferred_and_stay_in_order(tiny: Path) -> None:
    core = make_core(tiny)
    batch = [rec("cam", i, clean_jpeg(), T0 + timedelta(seconds=0.5 * i)) for i in range(3)]
    batch.insert(1, rec("other", 0, clean_jpeg(), T0))
    ok, _ = core.process(batch, now=T0 + timedelta(hours=1))
    assert [(c.event.camera_id, c.event.seq, c.event.inferred) for c in ok] == [
        ("cam", 0, True), ("other", 0, True), ("cam", 1, False), ("cam", 2, False)]
    assert ok[2].event.spill_prob == ok[0].event.spill_prob
    ok, _ = core.process([rec("cam", 3, clean_jpeg(), T0 + timedelta(seconds=2))], now=T0 + timedelta(hours=1))
    assert not ok[0].event.inferred and ok[0].event.seq == 3


def test_a_batch_frame_reusing_a_hot_result_is_inferred_after_all(tiny: Path) -> None:
    core = make_core(tiny)
    batch = [rec("cam", i, spill_jpeg(), T0 + timedelta(seconds=0.5 * i)) for i in range(3)]
    ok, _ = core.process(batch, now=T0 + timedelta(hours=1))
    assert [(c.event.seq, c.event.inferred) for c in ok] == [(0, True), (1, True), (2, True)]
    assert core.counts == {"inferred": 3, "reused": 0}


def test_a_batch_frame_reusing_a_settled_result_is_reused_unless_it_changed(tiny: Path) -> None:
    core = make_core(tiny)
    spill = spill_jpeg()
    assert [e.inferred for e in run(core, [rec("cam", i, spill, T0 + timedelta(seconds=0.5 * i)) for i in range(5)])] == [True] * 5
    batch = [rec("cam", 5 + i, spill, T0 + timedelta(seconds=2.5 + 0.5 * i)) for i in range(3)]
    ok, _ = core.process(batch, now=T0 + timedelta(hours=1))
    assert [c.event.inferred for c in ok] == [False] * 3 and all(c.suspicious for c in ok)
    moved = to_jpeg(with_stain(frame_image(), 6))  # the scene changed under a settled camera
    ok, _ = core.process([rec("cam", 8, moved, T0 + timedelta(seconds=4)), rec("cam", 9, spill, T0 + timedelta(seconds=4.5))],
                         now=T0 + timedelta(hours=1))
    assert [c.event.inferred for c in ok] == [True, True]  # both moved against what they would reuse


def test_learned_suppression_runs_on_reused_frames(tiny: Path) -> None:
    """A firing result that is reused is matched against the suppressions the worker has now (an
    entry learned after the frame was inferred applies to the reused frames)."""
    cache = SuppressionCache()
    settings = {"cameras": [{"id": "cam", "source": "x", "threshold": 1.0}], "aggregator": {"clear_threshold_ratio": 1.0},
                "gating": {"warm_ratio": 1.0}}  # never hot: the tiny model's firing result is reused
    core = make_core(tiny, FrameSuppressor(cache, margin=10.0, map_threshold=0.5), **settings)
    jpeg = spill_jpeg()
    (first,) = run(core, [rec("cam", 0, jpeg, T0)])
    assert first.inferred and first.looks and first.suppressed is None and first.spill_prob < 1.0
    grid = grid_of(first.spill_map)
    assert grid is not None
    now = datetime.now(UTC)
    learned = Entry(id=entry_id("cam", "inc-1"), camera_id="cam", grid=grid,
                    cells=[LearnedCell(cell=lk[0], look=list(lk[1:]), spread=[0.0] * 6, frames=5) for lk in first.looks],
                    incident_id="inc-1", by="op", source="test", created_at=now, expires_at=now + timedelta(days=1))
    cache.replace([learned], 1)
    (second,) = run(core, [rec("cam", 1, jpeg, T0 + timedelta(seconds=0.5))])
    assert not second.inferred
    assert second.suppressed and second.suppressed[0].entry == learned.id
    assert sorted(second.suppressed[0].cells) == sorted(lk[0] for lk in first.looks)


def test_a_warm_camera_sends_a_faint_change_to_the_model_even_within_a_batch(tiny: Path) -> None:
    """Any score is warm here (warm level ~0, never hot): a faint stain under the plain threshold is
    inferred, against the reference and against a frame of the same batch whose result came out warm;
    with the warm threshold at the plain one it is reused."""
    def core_with(warm_threshold: float) -> Classifier:
        return make_core(tiny, cameras=[{"id": "cam", "source": "x", "threshold": 1.0}], aggregator={"clear_threshold_ratio": 1.0},
                         gating={"warm_ratio": 1e-6, "warm_threshold": warm_threshold})

    base = scene(320, 240)
    same, faint = to_jpeg(base), to_jpeg(with_stain(base, 6))
    assert 0.1 <= float(block_difference(thumb_of(faint), thumb_of(same)).max()) < 0.3
    frames = [rec("cam", 0, same, T0), rec("cam", 1, same, T0 + timedelta(seconds=0.5)), rec("cam", 2, faint, T0 + timedelta(seconds=1))]
    warm = run(core_with(0.1), frames)
    assert warm[0].spill_prob >= 1e-6 and [e.inferred for e in warm] == [True, False, True]
    assert [e.inferred for e in run(core_with(0.3), frames)] == [True, False, False]
    ok, _ = core_with(0.1).process([frames[0], frames[2]], now=T0 + timedelta(hours=1))  # one batch
    assert [c.event.inferred for c in ok] == [True, True]
    ok, _ = core_with(0.3).process([frames[0], frames[2]], now=T0 + timedelta(hours=1))
    assert [c.event.inferred for c in ok] == [True, False]


def test_old_classifications_without_the_field_read_as_inferred() -> None:
    raw = b'{"v":1,"camera_id":"c","seq":1,"capture_time":"2026-12-01T09:00:00Z","spill_prob":0.1,"model_version":"m"}'
    assert Classification.from_bytes(raw).inferred is True


def test_a_frame_reuses_the_reference_it_was_judged_against_not_a_later_one_of_its_batch(tiny: Path) -> None:
    """Seq 1 (clean, unchanged) and seq 2 (a spill) in one batch: seq 1 keeps the clean result even
    though seq 2's inference replaces the camera's reference before the results are built."""
    core = make_core(tiny)
    run(core, [rec("cam", 0, clean_jpeg(), T0)])
    ok, _ = core.process([rec("cam", 1, clean_jpeg(), T0 + timedelta(seconds=0.5)),
                          rec("cam", 2, spill_jpeg(), T0 + timedelta(seconds=1))], now=T0 + timedelta(hours=1))
    assert [(c.event.seq, c.event.inferred, c.event.spill_prob < 0.5) for c in ok] == [(1, False, True), (2, True, False)]
