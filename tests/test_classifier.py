"""Classifier core and evidence rendering with a tiny real ONNX model (no broker needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from processors.classifier import BatchTimings, Classifier, reject_category
from processors.evidence import render_snapshot, write_snapshot
from spillwatch.events import FRAME_MAGIC, FrameHeader, Region, encode_frame
from spillwatch.model import SpillModel
from spillwatch.settings import Settings
from tests.helpers.tiny_model import build_tiny_model, clean_jpeg, spill_jpeg

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def core(tiny: Path) -> Classifier:
    settings = Settings(
        cameras=[{"id": "strict", "source": "x", "threshold": 0.999}],
        worker={"model_path": tiny},
        limits={"frame_bytes": 200_000},
    )
    return Classifier(SpillModel.load(tiny, threads=1), settings, "w-test")


def env(cam: str, seq: int, jpeg: bytes, **kw: object) -> tuple[bytes, bytes]:
    h = FrameHeader(camera_id=cam, seq=seq, capture_time=T0, width=320, height=240, **kw)
    return cam.encode(), encode_frame(h, jpeg)


def test_tiny_model_is_real_onnx_with_matching_card(tiny: Path) -> None:
    card = json.loads(tiny.with_name("tiny.card.json").read_text())
    m = SpillModel.load(tiny, threads=1)  # verifies the sha256
    assert m.version == card["version"] and m.input_size == card["input_size"]
    p_spill, p_clean = m.predict_jpegs([spill_jpeg(), clean_jpeg()])
    assert p_spill.spill_prob > 0.95 and p_clean.spill_prob < 0.1
    assert p_spill.spill_map.shape == (card["map_size"], card["map_size"])


def test_one_classification_per_good_frame_with_region_and_version(core: Classifier) -> None:
    recs = [env("cam-a", 1, spill_jpeg(), label="spill"), env("cam-b", 7, clean_jpeg())]
    timings = BatchTimings()
    ok, bad = core.process(recs, timings)
    assert bad == [] and len(ok) == 2
    s, c = ok[0].event, ok[1].event
    assert (s.camera_id, s.seq, c.camera_id, c.seq) == ("cam-a", 1, "cam-b", 7)
    assert ok[0].key == b"cam-a"
    assert s.spill_prob > 0.95 and c.spill_prob < 0.1
    assert s.model_version == "tiny-test-1" and s.worker == "w-test" and s.label == "spill"
    assert s.capture_time == T0  # the producer's capture time travels on
    # red patch is at x 0.1-0.45, y 0.55-0.95: the region must cover it, and the map is 8x8 uint8
    assert s.region is not None and s.region.x0 <= 0.125 and s.region.y0 <= 0.55 and s.region.x1 >= 0.45
    assert c.region is None
    assert len(s.spill_map) == 8 and all(0 <= v <= 255 for row in s.spill_map for v in row)
    assert ok[0].suspicious and not ok[1].suspicious
    assert timings.frames == 2 and timings.inference_ms > 0 and s.inference_ms > 0


def test_per_camera_threshold_decides_what_is_kept_as_evidence(core: Classifier) -> None:
    ok, _ = core.process([env("strict", 1, spill_jpeg())])
    assert ok[0].event.spill_prob < 0.999 and not ok[0].suspicious


@pytest.mark.parametrize(
    ("value", "category", "needle"),
    [
        (b"", "empty", "empty"),
        (b"garbage, not a frame", "bad_envelope", "bad magic"),
        (FRAME_MAGIC + b"\x00\x00\x00\x05{}", "bad_envelope", "header length"),
        (FRAME_MAGIC + b"\x00\x00\x00\x02{}" + b"\xff\xd8", "bad_header", "FrameHeader"),
    ],
)
def test_malformed_envelopes_are_rejected_with_reason(core: Classifier, value: bytes, category: str, needle: str) -> None:
    ok, bad = core.process([(b"k", value), env("cam-a", 1, clean_jpeg())])
    assert len(ok) == 1 and ok[0].event.seq == 1  # the good frame in the same batch still goes through
    assert len(bad) == 1 and bad[0].category == category and needle in bad[0].reason
    assert bad[0].payload == value and bad[0].key == b"k"


def test_unknown_header_version_rejected(core: Classifier) -> None:
    head = json.dumps({"v": 2, "camera_id": "c", "seq": 1, "capture_time": T0.isoformat(), "width": 1, "height": 1}).encode()
    value = FRAME_MAGIC + len(head).to_bytes(4, "big") + head + spill_jpeg()
    ok, bad = core.process([(b"c", value)])
    assert ok == [] and bad[0].category == "unknown_version"


def test_corrupt_jpeg_rejected(core: Classifier) -> None:
    good = spill_jpeg()
    corrupt = good[:20] + bytes(len(good) - 20)  # JPEG header then zeros
    ok, bad = core.process([env("cam-a", 3, b"\xff\xd8not really a jpeg"), env("cam-a", 4, corrupt), env("cam-a", 5, good)])
    assert [c.event.seq for c in ok] == [5]
    assert [b.category for b in bad] == ["not_jpeg", "bad_image"]  # refused from its markers, before decoding
    assert bad[0].header is not None and bad[0].header.seq == 3


def test_oversized_frame_rejected(core: Classifier) -> None:
    big = np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    ok_enc, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok, bad = core.process([env("cam-a", 1, buf.tobytes())])
    assert ok == [] and bad[0].category == "too_large" and "limit 200000" in bad[0].reason


def test_reject_category_labels_are_bounded() -> None:
    assert reject_category("frame too large: 5 bytes > limit 1") == "too_large"
    assert reject_category("something unexpected") == "other"


def test_snapshot_marks_region_and_zone(tmp_path: Path) -> None:
    region = Region(x0=0.1, y0=0.55, x1=0.45, y1=0.95, area=0.1)
    smap = np.zeros((8, 8), int)
    smap[5:8, 1:4] = 250
    data = render_snapshot(
        clean_jpeg(), region, zone=[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)], spill_map=smap.tolist(), label="x"
    )
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3)
    # a pixel inside the shaded spill cells is reddened, one far outside stays grey
    b, g, r = img[200, 60].astype(int)
    assert r > b + 40
    b2, g2, r2 = img[40, 280].astype(int)
    assert abs(r2 - b2) < 30
    path = write_snapshot(tmp_path / "ev", "cam-1-3-abc", data)
    assert path.is_absolute() and path.read_bytes() == data and path.name == "cam-1-3-abc.jpg"
    assert write_snapshot(tmp_path / "ev", "cam-1-3-abc", data) == path  # idempotent
    assert [p.name for p in (tmp_path / "ev").iterdir()] == ["cam-1-3-abc.jpg"]


def test_a_large_take_is_inferred_in_runs_of_the_inference_batch_with_the_same_outcomes(tiny: Path) -> None:
    """A worker takes up to ``worker.batch_size`` records at once (cheap when most frames reuse a result),
    but the model never gets more than ``worker.inference_batch`` frames in one run (a run of 32 was slower
    a frame with one ONNX thread); the outcomes and their order are those of one run."""
    recs = [env(f"cam-{i:02d}", i, spill_jpeg() if i % 3 == 0 else clean_jpeg()) for i in range(20)]
    recs.insert(5, (b"cam-bad", b"not a frame"))

    def run(inference_batch: int) -> tuple[list[int], BatchTimings, list, list]:
        settings = Settings(worker={"model_path": tiny, "batch_size": 32, "inference_batch": inference_batch})
        model = SpillModel.load(tiny, threads=2)
        sizes: list[int] = []
        real = model.prepare_and_infer

        def spy(items, prepare):  # type: ignore[no-untyped-def]
            sizes.append(len(items))
            return real(items, prepare)

        model.prepare_and_infer = spy  # type: ignore[method-assign]
        timings = BatchTimings()
        ok, bad = Classifier(model, settings, "w-test").process(recs, timings)
        return sizes, timings, ok, bad

    sizes, timings, ok, bad = run(8)
    assert sizes == timings.runs == [8, 8, 4]  # every frame of 20 cameras is a first frame: all inferred
    one_sizes, _, one_ok, one_bad = run(32)
    assert one_sizes == [20]
    assert [c.index for c in ok] == [c.index for c in one_ok] == [i for i in range(21) if i != 5]
    assert [(c.event.camera_id, c.event.seq) for c in ok] == [(c.event.camera_id, c.event.seq) for c in one_ok]
    assert [c.event.spill_prob for c in ok] == pytest.approx([c.event.spill_prob for c in one_ok], abs=1e-5)
    assert [c.suspicious for c in ok] == [c.suspicious for c in one_ok] == [i % 3 == 0 for i in range(20)]
    assert [(r.index, r.category) for r in bad] == [(r.index, r.category) for r in one_bad] == [(5, "bad_envelope")]
    assert timings.frames == 20 and timings.inference_ms > 0
