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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

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


Split = Literal["batch", "operators"]
T = TypeVar("T")
R = TypeVar("R")


def _each(fn: Callable[[T], R], items: Sequence[T]) -> list[R | Exception]:
    """``fn`` of each item, or the exception it raised for that item."""
    out: list[R | Exception] = []
    for item in items:
        try:
            out.append(fn(item))
        except Exception as exc:  # noqa: BLE001 - handed back in the item's place (OpenCV raises cv2.error)
            out.append(exc)
    return out


def _bounds(n_items: int, n: int) -> list[tuple[int, int]]:
    """(start, end) of ``n`` runs of consecutive items out of ``n_items``, as even as they go."""
    cuts = np.linspace(0, n_items, n + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _cut(items: Sequence[T], n: int) -> list[Sequence[T]]:
    return [items[a:b] for a, b in _bounds(len(items), n)]


def _session(path: Path, threads: int, spin: bool = True) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort  # local import: keep CLI start-up light

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class SpillModel:
    """An ONNX Runtime session plus its card. One per worker process.

    ``threads`` is how many cores decoding and inference may use, and ``split`` how a batch shares them:
    ``"batch"`` (the default) cuts the batch into up to ``threads`` lanes of consecutive frames, and each
    lane decodes, preprocesses and infers its own frames at the same time as the others, single-threaded
    in ONNX Runtime (one session: ``run`` may be called from several threads); ``"operators"`` decodes the
    batch and then gives ONNX Runtime ``threads`` intra-op threads that split every operator of one run.
    Inference alone is about as fast either way on an idle machine; the lanes win on the rest: the decode
    and resize (a third of a classifier's time) run beside the other lane's inference instead of before
    it, and no operator waits at a barrier for a thread another process has delayed
    (docs/performance.md, "Lanes"). A lone frame cannot be cut: it runs on a second session whose
    operators use every thread, without spinning between runs (spinning threads took the lanes' cores)."""

    def __init__(self, path: Path, card: ModelCard, threads: int = 2, verify: bool = True, split: Split = "batch") -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if split not in get_args(Split):
            raise ValueError(f"split must be one of {', '.join(get_args(Split))}, not {split!r}")
        self.path = Path(path)
        self.card = card
        if verify:
            card.verify(self.path)
        self.session = _session(self.path, 1 if split == "batch" else threads)
        self._single = _session(self.path, threads, spin=False) if split == "batch" and threads > 1 else None
        self.input_size = card.input_size
        self.threshold = card.threshold
        self.map_threshold = card.map_threshold
        self.version = card.version
        self.threads = threads
        self.split: Split = split
        # the lanes of in_lanes and prepare_and_infer (the calling thread runs the first); idle until used
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spill-model")

    @property
    def lanes(self) -> int:
        """How many runs a batch is cut into: the threads with the batch split, else one."""
        return self.threads if self.split == "batch" else 1

    @classmethod
    def load(cls, path: Path | str, *, threads: int = 2, verify: bool = True, split: Split = "batch") -> SpillModel:
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"model file not found: {p}")
        return cls(p, load_card(p), threads=threads, verify=verify, split=split)

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
        """Predictions for a batch of model inputs, in order (in up to ``lanes`` runs at once)."""
        x = np.ascontiguousarray(np.stack(list(batch)) if not isinstance(batch, np.ndarray) else batch)
        if x.ndim == 3:
            x = x[None]
        lanes = min(self.lanes, len(x))
        if lanes <= 1:
            return self._run(x, alone=True)[0]
        runs = self._fan_out(lambda part: self._run(part, False), [x[a:b] for a, b in _bounds(len(x), lanes)])
        return [p for preds, _ in runs for p in preds]

    def prepare_and_infer(
        self, items: Sequence[T], prepare: Callable[[T], np.ndarray]
    ) -> tuple[list[tuple[np.ndarray, Prediction] | Exception], float]:
        """``prepare`` each item (decode and preprocess: it returns the model input) and infer them as one
        batch; with the batch split the items are cut into up to ``lanes`` runs of consecutive items, and
        each lane prepares and infers its own at the same time as the others (OpenCV and ONNX Runtime
        release the GIL). Returns, per item in order, (model input, prediction) or the exception
        ``prepare`` raised for it (the other items go on: a corrupt frame never fails the batch), and
        the milliseconds inference took (the longest lane's ONNX Runtime time: lanes overlap)."""
        lanes = min(self.lanes, len(items))
        if lanes <= 1:
            return self._lane(items, prepare, alone=True)
        lanes_done = self._fan_out(lambda part: self._lane(part, prepare, False), _cut(items, lanes))
        return [r for done, _ in lanes_done for r in done], max(ms for _, ms in lanes_done)

    def in_lanes(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R | Exception]:
        """``fn`` over ``items`` in up to ``threads`` lanes of consecutive items at once (the first in this
        thread; for work that releases the GIL, such as OpenCV's decoders). Per item in order: its result,
        or the exception ``fn`` raised for it."""
        n = min(self.threads, len(items))
        if n <= 1:
            return _each(fn, items)
        return [r for done in self._fan_out(lambda part: _each(fn, part), _cut(items, n)) for r in done]

    def _fan_out(self, work: Callable[[Any], R], parts: Sequence[Any]) -> list[R]:
        """``work`` of each part at the same time: the first in this thread, the others in the pool; in order."""
        rest = [self._pool.submit(work, part) for part in parts[1:]]
        return [work(parts[0])] + [f.result() for f in rest]

    def _lane(
        self, items: Sequence[T], prepare: Callable[[T], np.ndarray], alone: bool
    ) -> tuple[list[tuple[np.ndarray, Prediction] | Exception], float]:
        """One lane: prepare its items, then one ONNX Runtime run."""
        prepared = _each(prepare, items)
        xs = [x for x in prepared if not isinstance(x, Exception)]
        if not xs:
            return list(prepared), 0.0  # type: ignore[arg-type]  # every item failed
        preds, ms = self._run(np.stack(xs), alone)
        it = iter(preds)
        return [x if isinstance(x, Exception) else (x, next(it)) for x in prepared], ms

    def _run(self, x: np.ndarray, alone: bool) -> tuple[list[Prediction], float]:
        """One ONNX Runtime run: (predictions, ms). ``alone``: no other lane runs beside it, so a lone frame
        (which cannot be cut) runs on the session whose operators use every thread."""
        session = self._single if alone and len(x) == 1 and self._single is not None else self.session
        t0 = time.perf_counter()
        prob, smap = session.run(["spill_prob", "spill_map"], {"image": np.ascontiguousarray(x)})
        ms = (time.perf_counter() - t0) * 1000.0
        return [Prediction(float(p), m.astype(np.float32)) for p, m in zip(prob, smap, strict=True)], ms

    def predict_images(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        if not images:
            return []
        return self.infer(np.stack([self.preprocess(im) for im in images]))

    def preprocess_many(self, jpegs: Sequence[bytes]) -> list[np.ndarray | ImageDecodeError]:
        """``preprocess_jpeg`` for several frames at once, spread over the model's threads (OpenCV
        releases the GIL while decoding). A corrupt frame yields its ImageDecodeError in its place
        instead of failing the batch, so callers can dead-letter it and carry on."""
        return [x if isinstance(x, np.ndarray | ImageDecodeError) else ImageDecodeError(f"image decode failed: {type(x).__name__}: {x}")
                for x in self.in_lanes(self.preprocess_jpeg, jpegs)]

    def predict_jpegs(self, jpegs: Sequence[bytes]) -> list[Prediction]:
        """Raises ImageDecodeError if any frame is corrupt (use ``preprocess_many`` to skip those)."""
        if not jpegs:
            return []
        xs = self.preprocess_many(jpegs)
        for x in xs:
            if isinstance(x, ImageDecodeError):
                raise x
        return self.infer(np.stack(xs))  # type: ignore[arg-type]

    def is_spill(self, pred: Prediction, threshold: float | None = None) -> bool:
        return pred.spill_prob >= (self.threshold if threshold is None else threshold)
