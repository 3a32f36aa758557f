"""``spillwatch bench model``: end-to-end throughput of decode + preprocess + inference on 480-px JPEG
frames, fp32 and int8, batch 1 and 8, with ``threads`` ONNX Runtime threads; int8 vs fp32 decision
agreement on the val frames.

Four modes: ``serial`` (decode + preprocess frame by frame, then infer the batch, as a naive worker
does), ``threaded`` (the batch's frames are decoded on the session's thread count with
``SpillModel.preprocess_many``, then inferred), ``pipelined`` (a thread prepares the next batch with
``preprocess_many`` while ONNX Runtime runs the current one; OpenCV and ONNX Runtime release the GIL)
and ``lanes`` (``SpillModel.prepare_and_infer``, as a classifier worker runs a batch: with the batch
split each lane decodes and infers its share of the batch). ``split`` is how the model's threads
share a batch (``SpillModel``: ``batch`` lanes or ``operators``)."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from queue import Queue
from typing import Any

import cv2
import numpy as np

from spillwatch.model import SpillModel, Split
from spillwatch.model_card import portable_path


def val_jpegs(manifest: Path | None, limit: int = 256, split: str = "val") -> tuple[list[bytes], str]:
    """JPEG bytes of real frames (the val split of the manifest, 480 px); without a manifest, synthetic
    frames rendered at 480x360 and JPEG-encoded at quality 85 (what producers publish)."""
    if manifest is not None and Path(manifest).is_file():
        from training.datasets import load_manifest

        recs = [r for r in load_manifest(manifest) if r.split == split] or load_manifest(manifest)
        step = max(1, len(recs) // limit)
        chosen = recs[::step][:limit]
        return [r.path.read_bytes() for r in chosen], f"{portable_path(manifest)} ({split}, {len(chosen)} frames)"
    from training.synth import generate_sample

    out = []
    for i in range(min(limit, 64)):
        s = generate_sample(900_000 + i, size=360)
        img = cv2.resize(s.image, (480, 360), interpolation=cv2.INTER_LINEAR)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(enc.tobytes())
    return out, f"synthetic 480x360 JPEG q85 ({len(out)} frames)"


def _batches(jpegs: Sequence[bytes], batch: int, n_frames: int) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    i = 0
    while len(out) * batch < n_frames:
        out.append([jpegs[(i + k) % len(jpegs)] for k in range(batch)])
        i += batch
    return out


def run_serial(model: SpillModel, batches: Sequence[Sequence[bytes]]) -> float:
    t0 = time.perf_counter()
    for b in batches:
        model.infer(np.stack([model.preprocess_jpeg(j) for j in b]))
    return time.perf_counter() - t0


def run_threaded(model: SpillModel, batches: Sequence[Sequence[bytes]]) -> float:
    """Decode/preprocess each batch on the session's thread count (SpillModel.preprocess_many), then infer."""
    t0 = time.perf_counter()
    for b in batches:
        model.infer(np.stack(model.preprocess_many(b)))  # type: ignore[arg-type]
    return time.perf_counter() - t0


def run_pipelined(model: SpillModel, batches: Sequence[Sequence[bytes]]) -> float:
    q: Queue[np.ndarray | None] = Queue(maxsize=2)

    def producer() -> None:
        for b in batches:
            q.put(np.stack(model.preprocess_many(b)))  # type: ignore[arg-type]
        q.put(None)

    t0 = time.perf_counter()
    th = threading.Thread(target=producer, daemon=True)
    th.start()
    while (x := q.get()) is not None:
        model.infer(x)
    th.join()
    return time.perf_counter() - t0


def run_lanes(model: SpillModel, batches: Sequence[Sequence[bytes]]) -> float:
    """Each batch as a classifier worker runs it: decoded and inferred in the model's lanes."""
    t0 = time.perf_counter()
    for b in batches:
        model.prepare_and_infer(b, model.preprocess_jpeg)
    return time.perf_counter() - t0


def run_infer_only(model: SpillModel, x: np.ndarray, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        model.infer(x)
    return time.perf_counter() - t0


def run_decode_only(model: SpillModel, jpegs: Sequence[bytes], n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        model.preprocess_jpeg(jpegs[i % len(jpegs)])
    return time.perf_counter() - t0


def agreement(m32: SpillModel, m8: SpillModel, jpegs: Sequence[bytes]) -> dict[str, Any]:
    x = np.stack([m32.preprocess_jpeg(j) for j in jpegs])
    p32 = np.array([p.spill_prob for p in m32.infer(x)])
    p8 = np.array([p.spill_prob for p in m8.infer(x)])
    thr = m32.threshold
    return {"n": len(jpegs), "threshold": thr,
            "decision_agreement": float(np.mean((p32 >= thr) == (p8 >= thr))),
            "max_abs_prob_diff": float(np.max(np.abs(p32 - p8))),
            "mean_abs_prob_diff": float(np.mean(np.abs(p32 - p8)))}


def bench(models: dict[str, Path], manifest: Path | None, batches: Sequence[int] = (1, 8), threads: int = 2,
          frames: int = 800, repeats: int = 3, modes: Sequence[str] = ("serial", "threaded", "pipelined", "lanes"),
          split: Split = "batch") -> dict[str, Any]:
    jpegs, source = val_jpegs(manifest)
    loaded = {prec: SpillModel.load(p, threads=threads, split=split) for prec, p in models.items()}
    rows: list[dict[str, Any]] = []
    for prec, model in loaded.items():
        run_decode_only(model, jpegs, 16)  # warm-up
        dec = min(run_decode_only(model, jpegs, 200) for _ in range(repeats)) / 200
        for b in batches:
            bl = _batches(jpegs, b, frames)
            x = np.stack([model.preprocess_jpeg(j) for j in bl[0]])
            model.infer(x)  # warm-up
            reps = max(4, 200 // b)
            inf = min(run_infer_only(model, x, reps) for _ in range(repeats)) / (reps * b)
            for mode in modes:
                fn = {"serial": run_serial, "threaded": run_threaded, "pipelined": run_pipelined, "lanes": run_lanes}[mode]
                fn(model, bl[:4])
                times = [fn(model, bl) for _ in range(repeats)]
                n = len(bl) * b
                best = min(times)
                rows.append({
                    "precision": prec, "batch": b, "mode": mode, "threads": threads, "split": split, "frames": n,
                    "frames_per_s": round(n / best, 1), "frames_per_s_median": round(n / statistics.median(times), 1),
                    "ms_per_frame": round(1000 * best / n, 3),
                    "infer_only_frames_per_s": round(1 / inf, 1), "decode_preprocess_ms": round(1000 * dec, 3),
                    "input_size": model.input_size, "model": portable_path(model.path), "model_version": model.version,
                })
    out: dict[str, Any] = {
        "rows": rows, "frames_source": source, "threads": threads, "split": split, "repeats": repeats,
        "note": "frames_per_s = best of `repeats` runs (median also given); end to end = JPEG decode (reduced) + resize + "
                "RGB + ONNX inference; other processes shared this CPU while it ran",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
    }
    if "fp32" in loaded and "int8" in loaded:
        agree_jpegs, agree_src = val_jpegs(manifest, limit=10_000)
        out["int8_agreement"] = agreement(loaded["fp32"], loaded["int8"], agree_jpegs) | {"frames_source": agree_src}
    try:
        import onnxruntime as ort

        out["onnxruntime"] = ort.__version__
    except ImportError:
        pass
    return out


def format_table(res: dict[str, Any]) -> str:
    head = f"{'precision':<9} {'batch':>5} {'mode':<9} {'frames/s':>9} {'median':>8} {'ms/frame':>9} {'infer-only/s':>12} {'decode ms':>9}"
    lines = [head, "-" * len(head)]
    for r in res["rows"]:
        lines.append(f"{r['precision']:<9} {r['batch']:>5} {r['mode']:<9} {r['frames_per_s']:>9.1f} {r['frames_per_s_median']:>8.1f} "
                     f"{r['ms_per_frame']:>9.3f} {r['infer_only_frames_per_s']:>12.1f} {r['decode_preprocess_ms']:>9.3f}")
    if "int8_agreement" in res:
        a = res["int8_agreement"]
        lines.append(f"int8 vs fp32 decisions agree on {a['decision_agreement'] * 100:.2f} % of {a['n']} frames "
                     f"(max |dp| {a['max_abs_prob_diff']:.4f}) [{a['frames_source']}]")
    lines.append(f"frames: {res['frames_source']}; threads: {res['threads']}, split: {res.get('split', 'operators')}")
    return "\n".join(lines)
