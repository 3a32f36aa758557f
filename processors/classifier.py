"""Classifier core: frame envelopes in, classifications and rejects out (no Kafka here).

One :class:`Classifier` per worker process wraps the model (``SpillModel``: ``worker.intra_op_threads``
threads, by default lanes that each decode and infer a share of a batch, ``worker.inference_split``).
``process`` takes a batch of raw records (key, value) as the Faust agent collected them with
``stream.take_events``; every record gives exactly one outcome: a :class:`Classified` (sent to ``classifications``) or a :class:`Rejected` (sent to the frames
dead-letter topic with its reason). A bad record never fails the batch.

Checks, cheapest first, so a hostile record costs no more than the check that rejects it:
record size (``limits.frame_bytes``, a length comparison), envelope and header, capture time
(``limits.capture_ahead_s`` ahead of this worker's clock), then the image from its JPEG markers
without decoding (JPEG only: PNG and other formats are rejected; at most ``limits.image_pixels``
pixels and ``limits.image_scans`` scans), and only then the decoder. A 30000x30000 image is
refused by its header, so the decoder never allocates for it.

Change gating (processors/gating.py, ``gating.*`` settings): after the (reduced) decode, a frame
whose scene has not changed since its camera's last classified frame skips the model and reuses
that classification (``inferred: false``, this frame's ids and times); the learned-suppression
step runs on reused results too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from processors.confirmation import params_for
from processors.gating import ChangeGate, Decision, Reference, log_odds_above, log_odds_below, params_from, thumbnail_of_jpeg
from processors.suppression import FrameSuppressor
from spillwatch.events import Classification, EventError, Frame, FrameHeader, capture_ahead, check_jpeg, decode_frame, utcnow
from spillwatch.logs import get_logger
from spillwatch.model import ImageDecodeError, Prediction, SpillModel, decode_jpeg
from spillwatch.settings import Settings
from spillwatch.suppression import firing_cells

log = get_logger("processors.classifier")


@dataclass(frozen=True)
class Classified:
    key: bytes
    event: Classification
    jpeg: bytes
    suspicious: bool  # spill_prob >= the camera's threshold: kept for the evidence snapshot
    index: int = 0  # position of the record in the batch given to ``process``

    def at(self, index: int) -> Classified:
        return replace(self, index=index)


@dataclass(frozen=True)
class Rejected:
    key: bytes | None
    payload: bytes | None
    reason: str
    category: str  # bounded label for the dead-letter metric
    header: FrameHeader | None = None
    index: int = -1  # position of the record in the batch given to ``process``

    def at(self, index: int) -> Rejected:
        return replace(self, index=index)


class Levels(NamedTuple):
    """A camera's gating levels (spill probabilities) and settle count."""

    threshold: float
    warm: float
    hot: float
    settle: float  # scores at or above count towards settling
    settle_after: int  # inferred frames in a row at the settle level that settle the camera (0: never)


@dataclass
class BatchTimings:
    decode_ms: float = 0.0
    inference_ms: float = 0.0
    frames: int = 0
    reused: int = 0  # of frames: results reused by change gating (no inference)
    rejected: int = 0
    runs: list[int] = field(default_factory=list)  # frames of each inference run (at most worker.inference_batch)
    extra: dict[str, float] = field(default_factory=dict)


def reject_category(reason: str) -> str:
    r = reason.lower()
    if "image too large" in r or "too many scans" in r:
        return "image_too_large"
    if "frames carry jpeg only" in r or "unsupported jpeg" in r:
        return "not_jpeg"
    if "jpeg" in r:
        return "bad_image"
    if "ahead of this clock" in r:
        return "clock_skew"
    if "too large" in r:
        return "too_large"
    if "bad magic" in r or "header length" in r or "no image payload" in r:
        return "bad_envelope"
    if r.startswith("invalid frameheader: v:") or "; v:" in r:
        return "unknown_version"
    if "frameheader" in r:
        return "bad_header"
    if "decode" in r or "image" in r:
        return "bad_image"
    if "empty" in r:
        return "empty"
    return "other"


class Classifier:
    def __init__(self, model: SpillModel, settings: Settings, worker_id: str, suppressor: FrameSuppressor | None = None) -> None:
        self.model = model
        self.suppressor = suppressor  # learned false alarms (processors/suppression.py); None: off
        self.settings = settings
        self.worker_id = worker_id
        self.inference_batch = settings.worker.inference_batch
        lim = settings.limits
        self.max_bytes = lim.frame_bytes
        self.max_pixels, self.max_scans, self.ahead_s = lim.image_pixels, lim.image_scans, lim.capture_ahead_s
        self._levels = lru_cache(maxsize=4096)(self._camera_levels)
        gate = params_from(settings)
        self.gate: ChangeGate[Classification] | None = ChangeGate(gate) if gate is not None else None
        self.counts = {"inferred": 0, "reused": 0}

    def _camera_levels(self, camera: str) -> Levels:
        """The camera's levels. At or above the hot level the camera's next frames are always
        inferred: a suspicion or an open incident is judged on fresh inferences (the clear level),
        and so is a score within ``gating.hot_margin`` log-odds of the threshold; unless the camera
        settled (``gating.settle_frames`` inferred frames in a row, at least its aggregator window,
        ``gating.settle_margin`` log-odds above its threshold: those fresh frames alone confirm).
        At or above the warm level (threshold x ``gating.warm_ratio``) its frames are held to the
        stricter ``gating.warm_threshold``: a slowly growing spill whose score climbs while its image
        barely changes must not wait for the refresh."""
        p = params_for(self.settings, camera, model_threshold=self.model.threshold)
        g = self.settings.gating
        clear = p.threshold * p.clear_ratio
        return Levels(p.threshold, min(clear, p.threshold * g.warm_ratio), min(clear, log_odds_below(p.threshold, g.hot_margin)),
                      log_odds_above(p.threshold, g.settle_margin), max(g.settle_frames, p.window) if g.settle_frames else 0)

    def _reject(
        self, key: bytes | None, value: bytes | None, reason: str, index: int, header: FrameHeader | None = None
    ) -> Rejected:
        return Rejected(key=key, payload=value, reason=reason, category=reject_category(reason), header=header, index=index)

    def process(
        self,
        records: list[tuple[bytes | None, bytes | None]],
        timings: BatchTimings | None = None,
        now: datetime | None = None,
    ) -> tuple[list[Classified], list[Rejected]]:
        """Classify a batch; ``now`` (default: this clock) is the reference of the capture-time check.
        Outcomes come in the order of ``records`` (per camera order is kept for the aggregator)."""
        t0 = time.perf_counter()
        frames, rejected = self._decode(records, now or utcnow())
        infer, reuse = self._gate(frames)
        out: list[Classified] = []
        inferred, infer_ms = self._infer(infer, rejected, out, timings)
        # A frame that was to reuse a frame of this batch whose result came out hot (and not
        # settled), or warm or settled while this frame moved by the warm threshold (or that could
        # not be decoded after all), is inferred itself.
        late: list[_Frame] = []
        reused: list[_Frame] = []
        for f in reuse:
            (late if self._late(f) else reused).append(f)
        if late:
            n, ms = self._infer(late, rejected, out, timings)
            inferred, infer_ms = inferred + n, infer_ms + ms
        for f in reused:
            out.append(self._classified(f, self._reused(f)))
        out.sort(key=lambda c: c.index)
        self.counts["inferred"] += inferred
        self.counts["reused"] += len(reused)
        if timings is not None:
            timings.decode_ms += (time.perf_counter() - t0) * 1000 - infer_ms
            timings.inference_ms += infer_ms
            timings.frames += len(out)
            timings.reused += len(reused)
            timings.rejected += len(rejected)
        return out, rejected

    def _infer(self, frames: list[_Frame], rejected: list[Rejected], out: list[Classified],
               timings: BatchTimings | None = None) -> tuple[int, float]:
        """Run the model on ``frames`` (appending to ``out`` / ``rejected``); the last inferred frame
        of each camera becomes its gate reference. Returns (frames inferred, inference ms)."""
        # in runs of at most ``worker.inference_batch`` frames (a take of 32 busy frames as one run of 32 was
        # ~8 % slower a frame with one ONNX thread); each run decoded, preprocessed and inferred in the lanes
        done: list[tuple[np.ndarray, Prediction] | Exception] = []
        infer_ms = 0.0
        for start in range(0, len(frames), self.inference_batch):
            run = frames[start:start + self.inference_batch]
            part, ms = self.model.prepare_and_infer(run, lambda f: self.model.preprocess(self._image(f)))
            done.extend(part)
            infer_ms += ms
            if timings is not None:
                timings.runs.append(len(run))
        ready: list[tuple[_Frame, np.ndarray, Prediction]] = []
        for f, r in zip(frames, done, strict=True):
            if isinstance(r, Exception):
                rejected.append(self._reject(f.key, f.value, f"image decode failed: {type(r).__name__}: {r}", f.index, f.header))
            else:
                ready.append((f, *r))
        if not ready:
            return 0, infer_ms
        per_frame = infer_ms / len(ready)
        for f, x, p in ready:
            h = f.header
            event = Classification(
                camera_id=h.camera_id,
                seq=h.seq,
                epoch=h.epoch,
                capture_time=h.capture_time,
                spill_prob=min(1.0, max(0.0, p.spill_prob)),
                spill_map=p.quantised_map(),
                region=p.region(self.model.map_threshold),
                model_version=self.model.version,
                worker=self.worker_id,
                inference_ms=round(per_frame, 3),
                label=h.label,
            )
            if self.gate is not None and f.thumb is not None:
                f.result = event
                lv = self._levels(h.camera_id)
                f.hot = self.gate.commit(h.camera_id, f.thumb, h.capture_time, h.epoch, result=event,
                                         hot=event.spill_prob >= lv.hot, warm=event.spill_prob >= lv.warm,
                                         high=event.spill_prob >= lv.settle, settle_after=lv.settle_after)
                ref = self.gate.reference(h.camera_id)
                f.warm = ref is not None and ref.is_warm(h.capture_time)
                f.settled = ref is not None and ref.settled
            if self.suppressor is not None:
                event = self.suppressor.annotate(event, x, min_prob=self._levels(h.camera_id).warm)
            out.append(self._classified(f, event))
        return len(ready), infer_ms

    # -------------------------------------------------------------- steps of process
    def _decode(self, records: list[tuple[bytes | None, bytes | None]], at: datetime) -> tuple[list[_Frame], list[Rejected]]:
        """Checks, cheapest first, then the (reduced) JPEG decodes of the frames that passed them, spread
        over the model's lanes: the frames to go on with."""
        checked: list[tuple[int, bytes | None, bytes, Frame]] = []
        rejected: list[Rejected] = []
        for i, (key, value) in enumerate(records):
            if not value:
                rejected.append(self._reject(key, value, "empty record", i))
                continue
            try:
                frame = decode_frame(value, max_bytes=self.max_bytes)
            except EventError as exc:
                rejected.append(self._reject(key, value, str(exc), i))
                continue
            ahead = capture_ahead(frame.header.capture_time, at, self.ahead_s)
            if ahead is not None:
                rejected.append(self._reject(key, value, ahead, i, frame.header))
                continue
            try:
                check_jpeg(frame.jpeg, max_pixels=self.max_pixels, max_scans=self.max_scans)
            except EventError as exc:
                rejected.append(self._reject(key, value, str(exc), i, frame.header))
                continue
            checked.append((i, key, value, frame))
        # with gating the cheap grayscale decode for the gate (colour only if inferred), else the model's
        gated = self.gate is not None
        size = self.model.input_size
        decoded = self.model.in_lanes(thumbnail_of_jpeg if gated else lambda j: decode_jpeg(j, target=size),
                                      [frame.jpeg for _, _, _, frame in checked])
        good: list[_Frame] = []
        for (i, key, value, frame), img in zip(checked, decoded, strict=True):
            if isinstance(img, ImageDecodeError):
                rejected.append(self._reject(key, value, f"image decode failed: {img}", i, frame.header))
            elif isinstance(img, Exception):  # OpenCV can raise cv2.error on hostile input
                rejected.append(self._reject(key, value, f"image decode failed: {type(img).__name__}: {img}", i, frame.header))
            else:
                good.append(_Frame(i, frame.header.camera_id.encode(), value, frame.header, frame.jpeg,
                                   None if gated else img, img if gated else None))
        rejected.sort(key=lambda r: r.index)  # in the records' order, as the checks found them
        return good, rejected

    def _gate(self, frames: list[_Frame]) -> tuple[list[_Frame], list[_Frame]]:
        """(frames to infer, frames that reuse a result). A camera's later frames in the batch are
        judged against its frame of the batch that is about to be inferred (``_Frame.source``)."""
        if self.gate is None:
            return frames, []
        infer: list[_Frame] = []
        reuse: list[_Frame] = []
        staged: dict[str, _Frame] = {}
        for f in frames:
            cam = f.header.camera_id
            src = staged.get(cam)
            assert f.thumb is not None  # made with the checks whenever gating is on
            if src is not None and src.thumb is not None:  # src: a frame of this batch, about to be inferred
                d = self.gate.judge(Reference(src.thumb, src.header.capture_time, src.header.epoch, None, False),
                                    f.thumb, f.header.capture_time, f.header.epoch)
            else:
                d = self.gate.decide(cam, f.thumb, f.header.capture_time, f.header.epoch)
            if d.classify:
                infer.append(f)
                staged[cam] = f
            else:
                f.source, f.decision = src, d
                if src is None:  # the reference as it is now: this batch's inferences replace it below
                    ref = self.gate.reference(cam)
                    f.reuses = ref.result if ref is not None else None
                reuse.append(f)
        return infer, reuse

    def _late(self, f: _Frame) -> bool:
        """Whether a frame that was to reuse a frame of this batch must be inferred after all: that
        frame's result came out hot and not settled, or warm or settled while this frame changed
        beyond the warm threshold, or it could not be decoded."""
        src = f.source
        if src is None or self.gate is None:
            return False
        if src.result is None or (src.hot and not src.settled):
            return True
        return src.warm and f.decision is not None and self.gate.warm_change(f.decision)  # a settled result is hot, so warm

    def _reused(self, f: _Frame) -> Classification:
        """The result this frame reuses (its camera's reference, or a frame of this batch), as this
        frame's (``inferred: false``)."""
        result = f.source.result if f.source is not None else f.reuses
        assert result is not None  # reuse is decided only against an inferred frame
        h = f.header
        event: Classification = result.model_copy(update={
            "seq": h.seq, "epoch": h.epoch, "capture_time": h.capture_time, "label": h.label, "worker": self.worker_id,
            "inference_ms": 0.0, "classified_at": utcnow(), "inferred": False, "looks": None, "suppressed": None,
        })
        if self.suppressor is not None and event.spill_map is not None and firing_cells(event.spill_map, self.model.map_threshold):
            # the same per-frame step as an inferred frame, on this frame's pixels
            try:
                event = self.suppressor.annotate(event, self.model.preprocess(self._image(f)))
            except Exception as exc:  # noqa: BLE001 - the decoder failed on this frame: fail-open, as annotate does
                log.warning("suppression step failed on a reused frame", camera=h.camera_id, seq=h.seq, error=repr(exc))
        return event

    def _image(self, f: _Frame) -> np.ndarray:
        """The frame decoded for the model (reduced size, BGR), decoded on first use."""
        if f.image is None:
            f.image = decode_jpeg(f.jpeg, target=self.model.input_size)
        return f.image

    def _classified(self, f: _Frame, event: Classification) -> Classified:
        return Classified(f.key, event, f.jpeg, event.spill_prob >= self._levels(f.header.camera_id).threshold, f.index)


@dataclass
class _Frame:
    """A record that passed the checks, decoded (reduced size, BGR)."""

    index: int
    key: bytes
    value: bytes
    header: FrameHeader
    jpeg: bytes
    image: np.ndarray | None  # None until needed when gating (the thumbnail comes from a cheaper decode)
    thumb: np.ndarray | None = None
    result: Classification | None = None  # when inferred (before suppression), for frames that reuse it
    hot: bool = False
    warm: bool = False
    settled: bool = False
    source: _Frame | None = None  # reusing a frame of the same batch (None: the camera's reference)
    reuses: Classification | None = None  # the camera's reference result when the decision was taken
    decision: Decision | None = None  # the gate's decision, for a frame that reuses a result
