"""The ONNX spill model at run time: decode, preprocess, infer, spill map -> region.

Shared by the classifier workers, evaluation, benchmarks and replay. Needs onnxruntime, numpy and
OpenCV only (never torch).

ONNX contract (what ``training`` exports and this module loads):
  input  ``image``     uint8  [N, S, S, 3]  RGB, S = card.input_size; normalisation is inside the graph
  output ``spill_prob`` float32 [N]          calibrated probability that the frame shows a spill
  output ``spill_map``  float32 [N, G, G]    per-cell spill probability (coarse map, G = card.map_size)

The model card (``spillwatch.model_card.ModelCard``) sits beside the model as ``<stem>.card.json``.
``SpillModel.load`` checks the sha256 so a card never describes another file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spillwatch.events import Region
from spillwatch.model_card import ModelCard, ModelError, card_path_for, load_card, sha256_file

__all__ = ["ImageDecodeError", "ModelCard", "ModelError", "Prediction", "SpillModel", "card_path_for", "decode_jpeg",
           "decode_jpeg_gray",
           "map_region", "sha256_file"]


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image."""


@dataclass(frozen=True)
class Prediction:
    spill_prob: float
    spill_map: np.ndarray  # float32 [G, G], 0..1

    def region(self, threshold: float) -> Region | None:
        return map_region(self.spill_map, threshold)

    def quantised_map(self) -> list[list[int]]:
        return np.clip(np.rint(self.spill_map * 255), 0, 255).astype(np.uint8).tolist()


def map_region(spill_map: np.ndarray, threshold: float) -> Region | None:
    """Bounding box (normalised) of the cells at or above ``threshold``; None when no cell is."""
    mask = spill_map >= threshold
    if not mask.any():
        return None
    g_h, g_w = mask.shape
    ys, xs = np.nonzero(mask)
    return Region(
        x0=float(xs.min()) / g_w,
        y0=float(ys.min()) / g_h,
        x1=float(xs.max() + 1) / g_w,
        y1=float(ys.max() + 1) / g_h,
        area=float(mask.mean()),
    )


def decode_jpeg(data: bytes, target: int | None = None) -> np.ndarray:
    """Decode to BGR. With ``target`` the decoder is asked for a reduced size (much cheaper) when the
    image is at least twice as large as needed."""
    # The size comes from the JPEG's SOF marker (no decode); reduce only while the short side stays >= target.
    return _imdecode(data, cv2.IMREAD_COLOR if target is None else _reduced_flag(data, target))


def decode_jpeg_gray(data: bytes, min_short: int) -> np.ndarray:
    """Grayscale, decoded at the smallest JPEG scale (1/8, 1/4, 1/2) whose short side stays at least
    ``min_short`` pixels: at 1/8 the decoder reads the DC coefficients only (each pixel is the mean of
    an 8 x 8 block), about half the cost of a colour decode at 1/2."""
    return _imdecode(data, _reduced_flag(data, min_short, gray=True))


def _imdecode(data: bytes, flag: int) -> np.ndarray:
    if not data:
        raise ImageDecodeError("empty image payload")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if img is None or img.size == 0:
        raise ImageDecodeError("image could not be decoded (corrupt or not a JPEG/PNG)")
    return img


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker, without decoding; None if not found."""
    i = 2
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg_len = (data[i + 2] << 8) | data[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = (data[i + 5] << 8) | data[i + 6]
            w = (data[i + 7] << 8) | data[i + 8]
            return w, h
        i += 2 + seg_len
    return None


# reduced decoding scales by output: (factor, flag), largest first; the colour path stops at 1/4
_REDUCED = {
    False: ((4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)),
    True: ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4), (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)),
}


def _reduced_flag(data: bytes, target: int, gray: bool = False) -> int:
    """The imdecode flag for the smallest scale whose short side stays >= ``target`` (from the SOF marker)."""
    full = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
    size = _jpeg_size(data)
    if size is None:
        return full
    short = min(size)
    return next((flag for factor, flag in _REDUCED[gray] if short >= factor * target), full)


class SpillModel:
    """An ONNX Runtime session plus its card. One per worker process."""

    def __init__(self, path: Path, card: ModelCard, threads: int = 2, verify: bool = True) -> None:
        import onnxruntime as ort  # local import: keep CLI start-up light

        self.path = Path(path)
        self.card = card
        if verify:
            card.verify(self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_size = card.input_size
        self.threshold = card.threshold
        self.map_threshold = card.map_threshold
        self.version = card.version
        self.threads = threads
        self._pool: Any = None

    @classmethod
    def load(cls, path: Path | str, *, threads: int = 2, verify: bool = True) -> SpillModel:
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"model file not found: {p}")
        return cls(p, load_card(p), threads=threads, verify=verify)

    # -------------------------------------------------------------- preprocessing
    def preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR image of any size -> uint8 RGB [S, S, 3] (plain resize; the model was trained on the same)."""
        s = self.input_size
        img = cv2.resize(image_bgr, (s, s), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def preprocess_jpeg(self, data: bytes) -> np.ndarray:
        """JPEG bytes -> model input; raises ImageDecodeError for a corrupt frame."""
        return self.preprocess(decode_jpeg(data, target=self.input_size))

    # -------------------------------------------------------------- inference
    def infer(self, batch: np.ndarray | Sequence[np.ndarray]) -> list[Prediction]:
        x = np.ascontiguousarray(np.stack(list(batch)) if not isinstance(batch, np.ndarray) else batch)
        if x.ndim == 3:
            x = x[None]
        prob, smap = self.session.run(["spill_prob", "spill_map"], {"image": x})
        return [Prediction(float(p), m.astype(np.float32)) for p, m in zip(prob, smap, strict=True)]

    def predict_images(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        if not images:
            return []
        return self.infer(np.stack([self.preprocess(im) for im in images]))

    def preprocess_many(self, jpegs: Sequence[bytes]) -> list[np.ndarray | ImageDecodeError]:
        """``preprocess_jpeg`` for several frames at once, spread over the session's thread count
        (OpenCV releases the GIL while decoding). A corrupt frame yields its ImageDecodeError in its
        place instead of failing the batch, so callers can dead-letter it and carry on."""
        if len(jpegs) < 2 or self.threads < 2:
            return [self._safe_preprocess(j) for j in jpegs]
        return list(self._executor().map(self._safe_preprocess, jpegs))

    def _safe_preprocess(self, data: bytes) -> np.ndarray | ImageDecodeError:
        try:
            return self.preprocess_jpeg(data)
        except ImageDecodeError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - OpenCV raises cv2.error on hostile input
            return ImageDecodeError(f"image decode failed: {type(exc).__name__}: {exc}")

    def _executor(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="spill-decode")
        return self._pool

    def predict_jpegs(self, jpegs: Sequence[bytes]) -> list[Prediction]:
        """Raises ImageDecodeError if any frame is corrupt (use ``preprocess_many`` to skip those)."""
        if not jpegs:
            return []
        xs = self.preprocess_many(jpegs)
        for x in xs:
            if isinstance(x, ImageDecodeError):
                raise x
        return self.infer(np.stack(xs))  # type: ignore[arg-type]

    def timed_infer(self, batch: np.ndarray) -> tuple[list[Prediction], float]:
        t0 = time.perf_counter()
        preds = self.infer(batch)
        return preds, (time.perf_counter() - t0) * 1000.0

    def is_spill(self, pred: Prediction, threshold: float | None = None) -> bool:
        return pred.spill_prob >= (self.threshold if threshold is None else threshold)
