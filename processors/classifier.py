"""Classifier core: frame envelopes in, classifications and rejects out (no Kafka here).

One :class:`Classifier` per worker process wraps one ONNX Runtime session (``SpillModel``,
``worker.intra_op_threads`` threads). ``process`` takes a batch of raw records (key, value) as the
Faust agent collected them with ``stream.take_events``; every record gives exactly one outcome:
a :class:`Classified` (sent to ``classifications``) or a :class:`Rejected` (sent to the frames
dead-letter topic with its reason). A bad record never fails the batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from processors.confirmation import params_for
from spillwatch.events import Classification, EventError, FrameHeader, decode_frame
from spillwatch.model import ImageDecodeError, SpillModel
from spillwatch.settings import Settings


@dataclass(frozen=True)
class Classified:
    key: bytes
    event: Classification
    jpeg: bytes
    suspicious: bool  # spill_prob >= the camera's threshold: kept for the evidence snapshot


@dataclass(frozen=True)
class Rejected:
    key: bytes | None
    payload: bytes | None
    reason: str
    category: str  # bounded label for the dead-letter metric
    header: FrameHeader | None = None


@dataclass
class BatchTimings:
    decode_ms: float = 0.0
    inference_ms: float = 0.0
    frames: int = 0
    rejected: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def reject_category(reason: str) -> str:
    r = reason.lower()
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
    def __init__(self, model: SpillModel, settings: Settings, worker_id: str) -> None:
        self.model = model
        self.settings = settings
        self.worker_id = worker_id
        self.max_bytes = settings.worker.max_frame_bytes
        self._threshold = lru_cache(maxsize=4096)(self._camera_threshold)

    def _camera_threshold(self, camera: str) -> float:
        return params_for(self.settings, camera, model_threshold=self.model.threshold).threshold

    def _reject(self, key: bytes | None, value: bytes | None, reason: str, header: FrameHeader | None = None) -> Rejected:
        return Rejected(key=key, payload=value, reason=reason, category=reject_category(reason), header=header)

    def process(
        self, records: list[tuple[bytes | None, bytes | None]], timings: BatchTimings | None = None
    ) -> tuple[list[Classified], list[Rejected]]:
        t0 = time.perf_counter()
        good: list[tuple[bytes, FrameHeader, bytes, np.ndarray]] = []
        rejected: list[Rejected] = []
        for key, value in records:
            if not value:
                rejected.append(self._reject(key, value, "empty record"))
                continue
            try:
                frame = decode_frame(value, max_bytes=self.max_bytes)
            except EventError as exc:
                rejected.append(self._reject(key, value, str(exc)))
                continue
            try:
                x = self.model.preprocess_jpeg(frame.jpeg)
            except ImageDecodeError as exc:
                rejected.append(self._reject(key, value, f"image decode failed: {exc}", frame.header))
                continue
            except Exception as exc:  # noqa: BLE001 - OpenCV can raise cv2.error on hostile input
                rejected.append(self._reject(key, value, f"image decode failed: {type(exc).__name__}: {exc}", frame.header))
                continue
            good.append((frame.header.camera_id.encode(), frame.header, frame.jpeg, x))
        t1 = time.perf_counter()
        out: list[Classified] = []
        infer_ms = 0.0
        if good:
            preds, infer_ms = self.model.timed_infer(np.stack([g[3] for g in good]))
            per_frame = infer_ms / len(good)
            for (key, h, jpeg, _), p in zip(good, preds, strict=True):
                event = Classification(
                    camera_id=h.camera_id,
                    seq=h.seq,
                    capture_time=h.capture_time,
                    spill_prob=min(1.0, max(0.0, p.spill_prob)),
                    spill_map=p.quantised_map(),
                    region=p.region(self.model.map_threshold),
                    model_version=self.model.version,
                    worker=self.worker_id,
                    inference_ms=round(per_frame, 3),
                    label=h.label,
                )
                out.append(Classified(key, event, jpeg, event.spill_prob >= self._threshold(h.camera_id)))
        if timings is not None:
            timings.decode_ms += (t1 - t0) * 1000
            timings.inference_ms += infer_ms
            timings.frames += len(out)
            timings.rejected += len(rejected)
        return out, rejected
