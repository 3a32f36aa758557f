"""Change gating does not delay confirmation: the shipped model (whatever models/ holds) and the
pure confirmation state machine on synthetic clips, classified with gating on and with it off.

* onset: the static bench scene of a spill camera (the bundled spill clip's last clean frame held
  with sensor noise and flicker, then its growth frames, then the grown spill held);
* slow growth: the same spill revealed pixel by pixel from its centre over 3 minutes, so that no frame
  differs much from the one before it (a frame-to-frame gate would never fire).

A settled spill (the grown one, held) reuses its result, but only after fresh inferences confirmed it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest

from processors.bench import load_clip
from processors.bench_scenes import build_static, decode, noisy_variants
from processors.classifier import Classifier
from processors.confirmation import CameraState, params_for
from processors.confirmation import observe as confirm_step
from processors.gating import block_difference, thumbnail_of_jpeg
from spillwatch.events import AlertState, Classification, FrameHeader, encode_frame
from spillwatch.model import SpillModel
from spillwatch.settings import Settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FPS = 2.0
CAM = "cam-spill"


@pytest.fixture(scope="module")
def model() -> SpillModel:
    return SpillModel.load(Settings().worker.model_path, threads=2)


@pytest.fixture(scope="module")
def clips() -> tuple[list[bytes], list[bytes], float, float]:
    spill, clean = load_clip("spill", 480), load_clip("clean", 480)
    assert spill.onset_s is not None
    return spill.jpegs, clean.jpegs, spill.fps, spill.onset_s


def onset_frames(clips: tuple[list[bytes], list[bytes], float, float], seconds: float = 40.0, grow_s: float = 5.0) -> list[bytes]:
    spill, clean, fps, onset = clips
    static = build_static(spill, clean, fps=fps, onset_s=onset, grow_s=grow_s)
    return [static.frame(0, True, i / FPS, i) for i in range(int(seconds * FPS))]


def slow_growth_frames(clips: tuple[list[bytes], list[bytes], float, float], grow_s: float = 180.0) -> list[bytes]:
    spill, _, fps, onset = clips
    first = int(round(onset * fps))
    before, after = decode(spill[first - 1]).astype(np.int16), decode(spill[first + 30]).astype(np.int16)
    h, w = before.shape[:2]
    mask = np.abs(after - before).max(axis=2) > 25
    mask[: int(h * 0.45)] = False  # the floor only (the clip's people and glare move above it)
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    order = np.argsort((ys - cy) ** 2 + ((xs - cx) / 1.6) ** 2)
    lead = int(5 * FPS)  # 5 s before the spill starts
    n = int(grow_s * FPS)
    frames = []
    for i in range(lead + n + int(10 * FPS)):
        k = int(len(order) * min(1.0, max(0, i - lead) / n))
        img = before.copy()
        sel = order[:k]
        img[ys[sel], xs[sel]] = after[ys[sel], xs[sel]]
        frames.append(noisy_variants(img.astype(np.uint8), 1, seed=i)[0])
    return frames


def confirmed_at(model: SpillModel, frames: list[bytes], gating: bool) -> tuple[datetime | None, int, list[Classification]]:
    """Capture time of the frame that confirms the incident, how many frames were inferred, and
    every frame's classification."""
    settings = Settings(worker={"model_path": model.path}, gating={"enabled": gating})
    core = Classifier(model, settings, "w-latency")
    params = params_for(settings, CAM, model_threshold=model.threshold, map_threshold=model.map_threshold)
    state = CameraState(camera_id=CAM)
    confirmed = None
    events = []
    for seq, jpeg in enumerate(frames):
        at = T0 + timedelta(seconds=seq / FPS)
        h = FrameHeader(camera_id=CAM, seq=seq, capture_time=at, width=480, height=360)
        ok, bad = core.process([(CAM.encode(), encode_frame(h, jpeg))], now=at)
        assert bad == [] and len(ok) == 1
        events.append(ok[0].event)
        step = confirm_step(state, ok[0].event, params, at)
        state = step.state
        if confirmed is None and any(a.state == AlertState.CONFIRMED for a in step.alerts):
            confirmed = at
    return confirmed, core.counts["inferred"], events


def hidden_suspicions(gated: list[Classification], fresh: list[Classification], threshold: float) -> list[int]:
    """Seqs of reused frames that the model, run on the frame itself, calls suspicious while the
    result they reuse does not: what the warm tier and the hot margin exist to prevent."""
    return [g.seq for g, f in zip(gated, fresh, strict=True)
            if not g.inferred and f.spill_prob >= threshold > g.spill_prob]


def test_a_spill_onset_on_a_static_scene_confirms_as_fast_with_gating(model: SpillModel, clips: tuple) -> None:
    frames = onset_frames(clips)
    ungated, n_all, fresh = confirmed_at(model, frames, gating=False)
    gated, n_gated, events = confirmed_at(model, frames, gating=True)
    assert ungated is not None, "the model does not confirm the spill clip at all: the comparison would prove nothing"
    assert hidden_suspicions(events, fresh, model.threshold) == []
    assert gated is not None and gated <= ungated
    assert n_gated < n_all


def test_a_spill_that_appears_at_once_and_stays_is_confirmed_by_fresh_inferences_alone(model: SpillModel, clips: tuple) -> None:
    """The grown spill held from one second after the onset (a dropped container): it settles and
    reuses its result, but only after the fresh inferences confirmed it; a reused score never adds
    evidence."""
    frames = onset_frames(clips, grow_s=0.0)
    ungated, _, fresh = confirmed_at(model, frames, gating=False)
    gated, n_gated, events = confirmed_at(model, frames, gating=True)
    assert ungated is not None and gated is not None and gated <= ungated
    assert hidden_suspicions(events, fresh, model.threshold) == []
    reused_hits = [e for e in events if not e.inferred and e.spill_prob >= model.threshold]
    assert reused_hits, "no settled camera reused a result: the settle tier was not exercised"
    assert gated < reused_hits[0].capture_time
    assert n_gated < len(frames) // 2


def test_a_slowly_growing_spill_is_still_caught_and_confirms_as_fast_with_gating(model: SpillModel, clips: tuple) -> None:
    frames = slow_growth_frames(clips)
    thumbs = [thumbnail_of_jpeg(j) for j in frames]
    step_peak = max(float(block_difference(a, b).max()) for a, b in pairwise(thumbs))
    assert step_peak < Settings().gating.threshold  # frame to frame, the growth never looks like a change
    ungated, n_all, fresh = confirmed_at(model, frames, gating=False)
    gated, n_gated, events = confirmed_at(model, frames, gating=True)
    assert ungated is not None, "the model does not confirm the grown spill: the comparison would prove nothing"
    assert hidden_suspicions(events, fresh, model.threshold) == []
    assert gated is not None and gated <= ungated, f"gated {gated} vs ungated {ungated}"
    assert n_gated < n_all
    assert any(not e.inferred and e.spill_prob >= model.threshold * Settings().gating.warm_ratio for e in events), (
        "no warm camera reused a result: the warm tier was not exercised")
