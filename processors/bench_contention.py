"""What a busy event loop beside it costs the classifier thread, by ONNX Runtime threads and GIL switch interval.

    python -m processors.bench_contention [--scene busy|static] [--frames 960] [--rounds 3] [--threads 2,1] [--intervals-ms 5,0.5]
                                          [--out var/bench/contention.json]

In a classifier worker one thread runs ``Classifier.process`` (JPEG decode, change gate, ONNX Runtime
with ``worker.intra_op_threads`` threads, events) while the event loop's thread runs Faust and
aiokafka (about a third of a core at saturation: docs/performance.md). Two ways that loop could slow
the classifier, and this bench tells them apart in one process, without the broker's noise:

* **the GIL**: the classifier thread gives up the GIL in every ONNX Runtime, OpenCV and large numpy
  call and must take it back afterwards; a thread that wants the GIL asks its holder to let go only
  after ``sys.getswitchinterval()`` (5 ms by default). If that were the cost, a shorter interval
  would win it back;
* **the cores**: ONNX Runtime splits each operator over its threads and waits for the slowest, so
  with two threads on two cores any other work on either core stalls every operator. Then one
  ONNX thread would be slowed far less by the loop than two.

The busy scene's frames (``bench pipeline --scene busy``, 32 cameras; ``--scene static`` for the still
cameras) go through ``Classifier.process`` in batches of ``worker.batch_size`` (so
``SPILLWATCH_WORKER__BATCH_SIZE`` compares take sizes), alone and beside an asyncio loop in a second thread doing small
pure-Python work items (a dict built, JSON encoded and decoded: per-message bookkeeping in kind) for
``--loop-work-ms`` with ``--loop-sleep-ms`` in ``select`` between, once per switch interval, for each
ONNX thread count; the cases of a round run back to back and rounds repeat, so the host's drift
falls on every case alike. Prints frames/s (median pass) and the loop's items/s; writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from processors.bench import _burst, load_clip, scene_source
from processors.classifier import Classifier
from spillwatch.events import encode_frame
from spillwatch.model import SpillModel
from spillwatch.settings import Settings, get_settings

Records = list[tuple[bytes | None, bytes | None]]


class BusyLoop:
    """An asyncio loop in its own thread: ``work_ms`` of pure Python, then ``sleep_ms`` in select, until stopped."""

    def __init__(self, work_ms: float, sleep_ms: float, nice: int = 0) -> None:
        self.work_s, self.sleep_s, self.nice = work_ms / 1000, sleep_ms / 1000, nice
        self.items = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="busy-loop", daemon=True)

    async def _run(self) -> None:
        message = {"camera_id": "cam-1", "seq": 1, "offset": 123456, "headers": [["k", "v"]] * 4}
        if self.nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)  # this thread only (Linux)
        while not self._stop.is_set():
            t_end = time.perf_counter() + self.work_s
            while time.perf_counter() < t_end:
                json.loads(json.dumps(dict(message, seq=self.items)))
                self.items += 1
            await asyncio.sleep(self.sleep_s)

    def __enter__(self) -> BusyLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def scene_records(frames: int, scene: str = "busy") -> Records:
    """The saturation burst of ``bench pipeline --scene`` (32 cameras at 2 fps), as raw records."""
    spill, clean = load_clip("spill", 480), load_clip("clean", 480)
    burst = _burst(spill, frames, scene_source(scene, spill, clean), 2.0)
    return [(cam.encode(), encode_frame(h, jpeg)) for cam, h, jpeg in burst]


def one_pass(model: SpillModel, settings: Settings, recs: Records, counts: dict[str, int] | None = None) -> float:
    """Frames/s of one pass; a fresh classifier (so a fresh change gate): every pass infers the same frames."""
    core = Classifier(model, settings, "bench-contention")
    batch = settings.worker.batch_size
    t0 = time.perf_counter()
    for i in range(0, len(recs), batch):
        core.process(recs[i : i + batch])
    fps = len(recs) / (time.perf_counter() - t0)
    if counts is not None:
        counts.update(core.counts)
    return fps


def run(settings: Settings, recs: Records, rounds: int, threads: list[int], intervals_ms: list[float],
        loop_work_ms: float = 0.3, loop_sleep_ms: float = 0.6, nices: tuple[int, ...] = (0,), scene: str = "busy") -> dict[str, Any]:
    """Every case's passes and medians; the switch interval is restored however it ends."""
    if any(nices) and not sys.platform.startswith("linux"):
        raise ValueError("a nice value for the loop's thread alone needs Linux (elsewhere it would renice the process)")
    if any(not 0 <= k <= 19 for k in nices):
        raise ValueError(f"nice values are 0..19, not {nices}")
    models = {n: SpillModel.load(settings.worker.model_path, threads=n, split=settings.worker.inference_split) for n in threads}
    default = sys.getswitchinterval()
    cases: list[tuple[str, int, float | None, int]] = []
    for n in threads:
        cases.append((f"threads={n} alone", n, None, 0))
        cases += [(f"threads={n} loop switch={ms:g}ms" + (f" nice={k}" if k else ""), n, ms, k) for ms in intervals_ms for k in nices]
    fps: dict[str, list[float]] = {c[0]: [] for c in cases}
    items: dict[str, list[float]] = {c[0]: [] for c in cases if c[2] is not None}
    counts: dict[str, int] = {}
    for m in models.values():
        one_pass(m, settings, recs[: settings.worker.batch_size * 4])  # warm-up
    try:
        with tqdm(total=rounds * len(cases), desc="contention bench", unit="pass") as bar:
            for _ in range(rounds):
                for case, n, ms, nice in cases:
                    if ms is None:
                        sys.setswitchinterval(default)
                        fps[case].append(one_pass(models[n], settings, recs, counts))
                    else:
                        sys.setswitchinterval(ms / 1000)
                        t0 = time.perf_counter()
                        with BusyLoop(loop_work_ms, loop_sleep_ms, nice) as loop:
                            fps[case].append(one_pass(models[n], settings, recs))
                        items[case].append(loop.items / (time.perf_counter() - t0))
                    bar.update()
    finally:
        sys.setswitchinterval(default)
    out: dict[str, Any] = {
        "model_version": next(iter(models.values())).version, "batch": settings.worker.batch_size, "frames_per_pass": len(recs),
        "rounds": rounds, "scene": scene, "inferred_fraction": round(counts["inferred"] / max(1, sum(counts.values())), 3),
        "loop_work_ms": loop_work_ms, "loop_sleep_ms": loop_sleep_ms, "default_switch_interval_ms": round(default * 1000, 3),
        "cases": {},
    }
    for case, n, ms, nice in cases:
        alone = statistics.median(fps[f"threads={n} alone"])
        row: dict[str, Any] = {"onnx_threads": n, "switch_interval_ms": ms, "loop_nice": nice if ms is not None else None,
                               "frames_per_s": [round(x, 1) for x in fps[case]],
                               "frames_per_s_median": round(statistics.median(fps[case]), 1),
                               "ratio_to_alone": round(statistics.median(fps[case]) / alone, 3)}
        if case in items:
            row["loop_items_per_s_median"] = round(statistics.median(items[case]))
        out["cases"][case] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=960, help="frames per pass")
    ap.add_argument("--scene", choices=["busy", "static"], default="busy", help="the frames of bench pipeline --scene")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="2,1", help="ONNX Runtime intra-op thread counts to compare")
    ap.add_argument("--intervals-ms", default="5,0.5", help="GIL switch intervals to compare, ms (Python's default: 5)")
    ap.add_argument("--loop-work-ms", type=float, default=0.3, help="the loop's pure-Python work between sleeps")
    ap.add_argument("--loop-sleep-ms", type=float, default=0.6, help="the loop's sleep in select between work")
    ap.add_argument("--loop-nice", default="0", help="nice values (0..19, Linux) of the loop's thread to compare (0: as the classifier's)")
    ap.add_argument("--out", type=Path, default=Path("var/bench/contention.json"))
    args = ap.parse_args()
    try:
        result = run(get_settings(), scene_records(args.frames, args.scene), args.rounds, [int(x) for x in args.threads.split(",")],
                     [float(x) for x in args.intervals_ms.split(",")], args.loop_work_ms, args.loop_sleep_ms,
                     tuple(int(x) for x in args.loop_nice.split(",")), args.scene)
    except ValueError as exc:
        raise SystemExit(f"bench_contention: {exc}") from exc
    for case, row in result["cases"].items():
        extra = f"; loop {row['loop_items_per_s_median']} items/s" if "loop_items_per_s_median" in row else ""
        print(f"{case:>38}: {row['frames_per_s_median']:6.1f} frames/s (x{row['ratio_to_alone']} of alone; passes "
              f"{row['frames_per_s']}){extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
