"""``spillwatch bench pipeline``: the pipeline's throughput and latency through the real broker.

Three measurements, all with real processes (``spillwatch worker`` / ``spillwatch aggregator``
subprocesses, the configured ONNX model, the bundled synthetic clips downsized like a producer
would), on a private embedded stack by default:

1. **profile** (in this process): per-frame cost of JPEG decode + preprocess and of ONNX inference at
   the worker batch size, i.e. the ceiling of one worker without Kafka; measured again right after the
   one-worker throughput run (``profile_after``), so that the ratio of the two (``ceiling_bracket``)
   shows how far the host's speed drifted meanwhile.
2. **throughput** for each worker count: a burst of frames published as fast as possible to a fresh
   topic set, classified end to end (frames topic -> worker -> classifications topic -> reader);
   frames/s = frames / (last classification received - first frame published).
3. **latency** at ``--cameras`` x ``--fps`` for ``--seconds``: frames paced in real time (capture
   time = publish time), about one camera in ten plays the spill clip, the others the clean clip;
   capture -> classification received, and capture of the confirming frame -> spill alert received
   (the page leaves alerting right after), p50/p99; split into time before the classification was
   created (frames hop, batching, decode, inference) and the classifications/aggregator hop.

Writes everything as JSON (``--out``) and prints a table. Needs the model at ``worker.model_path``.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from processors.bench_scenes import SCENES, FrameSource, build_static, frame_source
from spillwatch.events import Classification, FrameHeader, SpillAlert, encode_frame
from spillwatch.logs import get_logger
from spillwatch.settings import REPO_ROOT, Settings, get_settings
from spillwatch.supervisor import ServiceGroup
from spillwatch.topic_reader import TopicReader

if TYPE_CHECKING:  # pragma: no cover
    from spillwatch.model import Split

log = get_logger("processors.bench")
CLIPS = REPO_ROOT / "samples" / "clips"
OTHER_ROLE = "other (not this bench)"  # a process on this machine that the bench did not start


# --------------------------------------------------------------------------- inputs


@dataclass
class Clip:
    jpegs: list[bytes]
    fps: float
    onset_s: float | None
    grow_s: float | None = None  # how long a spill takes to grow to full size (the generator's meta)


def load_clip(name: str, width: int, quality: int = 85) -> Clip:
    """The bundled clip's frames, downsized to ``width`` and JPEG-encoded once (as a producer does)."""
    import cv2

    meta = json.loads((CLIPS / f"{name}.json").read_text())
    cap = cv2.VideoCapture(str(CLIPS / f"{name}.mp4"))
    jpegs: list[bytes] = []
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            h, w = img.shape[:2]
            if w > width:
                img = cv2.resize(img, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            jpegs.append(buf.tobytes())
    finally:
        cap.release()
    if not jpegs:
        raise RuntimeError(f"could not read {name}.mp4 (OpenCV without a video backend?)")
    return Clip(jpegs, float(meta["fps"]), meta.get("onset_s"), meta.get("meta", {}).get("grow_s"))


def scene_source(scene: str | None, spill: Clip, clean: Clip) -> FrameSource | None:
    """The frames of ``--scene`` from the bundled clips (None: today's bench, every camera plays a clip);
    a static spill camera's spill grows over the clip's ``grow_s``."""
    if scene is None:
        return None
    static = None
    if scene in ("static", "mixed"):
        grow_s = spill.grow_s if spill.grow_s is not None else 5.0
        static = build_static(spill.jpegs, clean.jpegs, fps=spill.fps, onset_s=spill.onset_s or 0.0, grow_s=grow_s)
    return frame_source(scene, static, spill, clean)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def dist(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": round(max(values), 1) if values else None}


# --------------------------------------------------------------------------- processes


def bench_settings(base: Settings, model: Path, logdir: Path) -> Settings:
    """What every bench service runs with: the model under test, synthetic cameras (no allow-list,
    no per-camera zones), evidence and Faust data under the log folder, JSON logs."""
    return base.model_copy(update={
        "cameras": [],
        "log_format": "json",
        "data_dir": logdir / "data",
        "worker": base.worker.model_copy(update={"model_path": model}),
        "alerting": base.alerting.model_copy(update={"evidence_dir": logdir / "evidence"}),
    })


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (``taskset``, a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(settings: Settings, n: int) -> int:
    """ONNX Runtime threads each of ``n`` workers gets: ``worker.intra_op_threads`` as deployed, never more
    than its share of the usable cores (on 2 cores: one worker 2 threads, two workers 1 each; on 16
    cores every worker keeps its setting, and the event loops, broker and bench run beside them)."""
    return max(1, min(settings.worker.intra_op_threads, usable_cores() // n))


def start_workers(group: ServiceGroup, settings: Settings, n: int) -> int:
    """``n`` classifier workers sharing the cores; returns the inference threads each one gets."""
    threads = threads_per_worker(settings, n)
    per_worker = settings.model_copy(update={"worker": settings.worker.model_copy(update={"intra_op_threads": threads})})
    for _ in range(n):
        group.start("worker", settings=per_worker)
    return threads


_PARSED: weakref.WeakKeyDictionary[TopicReader, tuple[int, list[tuple[float, Classification]]]] = weakref.WeakKeyDictionary()


def classifications(reader: TopicReader, prefix: str = "") -> list[tuple[float, Classification]]:
    """(received at, event) of the classifications read so far whose camera id starts with ``prefix``.
    Parsed once per record (the bench polls this while workers run on the same cores); kept per
    reader object (weakly: an id() could be reused by the next run's reader)."""
    records = reader.snapshot()
    done, parsed = _PARSED.get(reader, (0, []))
    for r in records[done:]:
        if r.value is not None:
            parsed.append((r.received_at, Classification.from_bytes(r.value)))
    _PARSED[reader] = (len(records), parsed)
    return [(t, e) for t, e in parsed if e.camera_id.startswith(prefix)]


def inferred_fraction(got: list[tuple[float, Classification]]) -> float | None:
    """Share of the classifications the model actually inferred (the rest reused: change gating)."""
    return round(sum(1 for _, e in got if e.inferred) / len(got), 4) if got else None


# --------------------------------------------------------------------------- measurements


def profile(model_path: Path, clip: Clip, batch: int, threads: int, n: int = 240, rounds: int = 3,
            split: Split = "batch") -> dict[str, Any]:
    """The model-only ceiling of one worker: decode + preprocess, then inference at the worker's batch
    size, in this process with the machine to itself. ``rounds`` passes over ``n`` frames; the median
    pass is reported (one short pass moved with the host's speed by 10-20 %, and the ratio of the
    saturated worker to this ceiling is only as steady as its denominator)."""
    from spillwatch.model import SpillModel

    m = SpillModel.load(model_path, threads=threads, split=split)
    frames = clip_frames(clip, n)
    m.infer(np.stack([m.preprocess_jpeg(j) for j in frames[:batch]]))  # warm-up
    passes = [ceiling_pass(m, frames, batch) for _ in range(max(1, rounds))]
    ceilings = sorted(1000 / (d + i) for d, i in passes)
    dec, inf = sorted(passes, key=lambda p: 1000 / (p[0] + p[1]))[len(passes) // 2]
    try:
        shown = str(model_path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        shown = model_path.name
    return {"model": shown, "model_file": model_path.name, "model_version": m.version, "input_size": m.input_size, "batch": batch,
            "threads": threads, "split": split, "frame_bytes_mean": int(np.mean([len(j) for j in frames])),
            "decode_preprocess_ms_per_frame": round(dec, 2), "inference_ms_per_frame": round(inf, 2),
            "ceiling_fps_one_worker": round(1000 / (dec + inf), 1), "frames_per_round": n,
            "ceiling_fps_rounds": [round(c, 1) for c in ceilings]}


def clip_frames(clip: Clip, n: int) -> list[bytes]:
    """The frames a ceiling pass runs: the clip's JPEGs, repeated to ``n``."""
    return [clip.jpegs[i % len(clip.jpegs)] for i in range(n)]


def ceiling_pass(m: Any, frames: list[bytes], batch: int) -> tuple[float, float]:
    """One pass of the ceiling over ``frames``, batch by batch as a worker runs them (decode and preprocess,
    then inference, in the model's lanes): (decode + preprocess, inference) ms a frame."""
    wall = infer = 0.0
    for i in range(0, len(frames), batch):
        t0 = time.perf_counter()
        _, ms = m.prepare_and_infer(frames[i : i + batch], m.preprocess_jpeg)
        wall += time.perf_counter() - t0
        infer += ms / 1000
    return (wall - infer) * 1000 / len(frames), infer * 1000 / len(frames)


def bracket(frames_per_s: float, before: dict[str, Any], after: dict[str, Any], steady_within: float = 0.10) -> dict[str, Any]:
    """One saturated worker against the model-only ceiling measured right before *and* right after its run.

    This host's speed moves by 10-30 % within minutes (shared machines: the 16-core host's ceiling read 3.46
    and 4.57 ms of inference a frame in two runs of one session), so a ratio against one ceiling can move by
    as much as the effect it is meant to show. The mean of the two bounds the drift; ``steady`` says whether
    the two ceilings agree within ``steady_within`` (otherwise the ratio is not a measurement of the worker)."""
    lo, hi = sorted((before["ceiling_fps_one_worker"], after["ceiling_fps_one_worker"]))
    mean = (lo + hi) / 2
    drift = after["ceiling_fps_one_worker"] / before["ceiling_fps_one_worker"]
    return {"ceiling_fps_before": before["ceiling_fps_one_worker"], "ceiling_fps_after": after["ceiling_fps_one_worker"],
            "ceiling_fps_mean": round(mean, 1), "drift": round(drift, 3), "steady": hi / lo <= 1 + steady_within,
            "inference_ms_per_frame_before": before["inference_ms_per_frame"],
            "inference_ms_per_frame_after": after["inference_ms_per_frame"],
            "ratio_one_worker_to_ceiling": round(frames_per_s / mean, 3),
            "ratio_range": [round(frames_per_s / hi, 3), round(frames_per_s / lo, 3)]}


def _publish(settings: Settings, frames: list[tuple[str, FrameHeader, bytes]]) -> None:
    from spillwatch.kafka import make_producer

    p = make_producer(settings, "bench")
    try:
        for cam, h, jpeg in frames:
            p.send(settings.topics.frames, key=cam.encode(), value=encode_frame(h, jpeg))
        p.flush(60)
    finally:
        p.close()


def _fresh(base: Settings, tag: str) -> Settings:
    from spillwatch.kafka import create_topics

    ns = f"bench.{tag}.{uuid.uuid4().hex[:6]}."
    s = base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"topic_prefix": ns}),
        "redis": base.redis.model_copy(update={"key_prefix": f"bench:{tag}:{uuid.uuid4().hex[:6]}"}),
    })
    create_topics(s)
    return s


def _wait_workers(reader: TopicReader, settings: Settings, n: int, timeout_s: float = 90) -> float:
    """Publish warm-up frames (cameras 'warm-*') until n workers answered: each worker has its
    partitions and a loaded model."""
    t0 = time.monotonic()
    seen: set[str] = set()
    i = 0
    clean = load_clip("clean", 320).jpegs[0]
    while len(seen) < n:
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"only {len(seen)} of {n} workers became active in {timeout_s:.0f}s")
        now = datetime.now(UTC)
        _publish(settings, [(f"warm-{k}", FrameHeader(camera_id=f"warm-{k}", seq=i, capture_time=now, width=320,
                                                       height=240), clean) for k in range(16)])
        i += 1
        time.sleep(0.5)
        seen = {e.worker for _, e in classifications(reader, "warm-")}
    return time.monotonic() - t0


def _burst(clip: Clip, frames: int, source: FrameSource | None, fps: float) -> list[tuple[str, FrameHeader, bytes]]:
    """The saturation run's frames: 32 cameras. Without a scene, today's burst (the spill clip's
    frames in turn, one capture time); with one, each camera's frames of the scene at ``fps``
    (capture times spaced 1/fps apart, ending now; one camera in ten a spill camera)."""
    cams = 32
    now = datetime.now(UTC)
    if source is None:
        return [(f"cam-{i % cams}", FrameHeader(camera_id=f"cam-{i % cams}", seq=i // cams, capture_time=now, width=480,
                 height=360), clip.jpegs[i % len(clip.jpegs)]) for i in range(frames)]
    per_cam = -(-frames // cams)
    out = []
    for i in range(frames):
        c, seq = i % cams, i // cams
        at = now - timedelta(seconds=(per_cam - seq) / fps)
        out.append((f"cam-{c}", FrameHeader(camera_id=f"cam-{c}", seq=seq, capture_time=at, width=480, height=360),
                    source(c, c % 10 == 0, seq / fps, seq)))
    return out


def _await_classified(reader: TopicReader, want: int, deadline: float, poll_s: float) -> tuple[list[tuple[float, Classification]], int]:
    """The bench cameras' classifications once ``want`` distinct frames are classified (or at ``deadline``),
    and how many distinct frames that is."""
    got = classifications(reader, "cam-")
    while len({(e.camera_id, e.seq) for _, e in got}) < want and time.time() < deadline:
        time.sleep(poll_s)
        got = classifications(reader, "cam-")
    return got, len({(e.camera_id, e.seq) for _, e in got})


def throughput(base: Settings, model: Path, logdir: Path, clip: Clip, workers: int, frames: int,
               source: FrameSource | None = None, fps: float = 2.0) -> dict[str, Any]:
    s = _fresh(bench_settings(base, model, logdir), f"tp{workers}")
    with ServiceGroup(s, logdir / f"throughput-{workers}w", cwd=REPO_ROOT) as group, \
            TopicReader(s, [s.topics.classifications]) as reader:
        reader.start()
        threads = start_workers(group, s, workers)
        ready_s = _wait_workers(reader, s, workers)
        burst = _burst(clip, frames, source, fps)
        cpu0, t0 = _cpu_seconds(), time.time()
        _publish(s, burst)
        t_pub = time.time() - t0
        deadline = time.time() + max(120.0, frames / 5)

        got, done = _await_classified(reader, frames, deadline, poll_s=0.2)
        cores = _cpu_by_role(cpu0, _cpu_seconds(), time.time() - t0)
        t_last = max((t for t, _ in got), default=time.time())
        inference_ms = [e.inference_ms for _, e in got if e.inferred]
        per_worker: dict[str, int] = {}
        for _, e in got:
            per_worker[e.worker] = per_worker.get(e.worker, 0) + 1
        elapsed = t_last - t0
        return {"workers": workers, "threads_per_worker": threads, "frames": frames, "classified": done,
                "publish_s": round(t_pub, 2), "elapsed_s": round(elapsed, 2),
                "frames_per_s": round(done / elapsed, 1) if elapsed > 0 else None,
                "inferred_fraction": inferred_fraction(got),
                # the model's time a frame inside the saturated worker (its batches' Session.run / frames),
                # against profile.inference_ms_per_frame measured with the machine to itself
                "inference_ms_per_frame_median": round(float(np.median(inference_ms)), 2) if inference_ms else None,
                # cores each process used from the burst's publication to the last classification
                # (the worker shares the machine with the broker and this bench's reader)
                "cores_used_during_run": cores,
                "worker_ready_s": round(ready_s, 1), "per_worker": sorted(per_worker.values(), reverse=True)}


def alternating(base: Settings, model: Path, logdir: Path, clip: Clip, frames: int, segments: int,
                source: FrameSource | None = None, fps: float = 2.0, ceiling_frames: int = 240) -> dict[str, Any]:
    """One saturated worker against the ceiling, taken in turns: a ceiling pass (in this process, the
    worker idle), a segment of the burst through the worker, a ceiling pass, the next segment, ... and a
    last ceiling pass. Each segment's frames/s is divided by the mean of the passes either side of it, so
    the host's drift within a run (10-30 % on shared machines) falls on both sides of each ratio; the
    figure weighs the segments by their time (``alternating_ratio``). The burst is the throughput run's, cut in order (a camera's
    frames stay in sequence and its gate reference carries over, as in one run); a segment starts with
    an idle worker, which costs it its first fetch (conservative)."""
    from spillwatch.model import SpillModel

    if segments < 2:
        raise ValueError("alternating needs at least 2 segments")
    s = _fresh(bench_settings(base, model, logdir), "alt")
    threads = threads_per_worker(s, 1)
    # one session for every pass (not a load between two segments), warmed by a whole pass first
    m = SpillModel.load(model, threads=threads, split=s.worker.inference_split)
    ceiling_frames_list = clip_frames(clip, ceiling_frames)
    ceiling_pass(m, ceiling_frames_list, s.worker.inference_batch)

    def ceiling() -> float:
        dec, inf = ceiling_pass(m, ceiling_frames_list, s.worker.inference_batch)
        return round(1000 / (dec + inf), 1)

    burst = _burst(clip, frames, source, fps)
    size = -(-len(burst) // segments)
    parts = [burst[i : i + size] for i in range(0, len(burst), size)]
    ceilings: list[float] = []
    rows: list[dict[str, Any]] = []
    with ServiceGroup(s, logdir / "alternating", cwd=REPO_ROOT) as group, \
            TopicReader(s, [s.topics.classifications]) as reader:
        reader.start()
        start_workers(group, s, 1)
        _wait_workers(reader, s, 1)
        done_before = 0
        for part in tqdm(parts, desc="alternating ceiling / worker", unit="segment"):
            ceilings.append(ceiling())
            t0 = time.time()
            _publish(s, part)
            want = done_before + len(part)
            deadline = time.time() + max(60.0, len(part) / 5)
            got, done = _await_classified(reader, want, deadline, poll_s=0.05)
            t_last = max((t for t, _ in got), default=time.time())
            rows.append({"frames": len(part), "classified": done - done_before,
                         "frames_per_s": round((done - done_before) / (t_last - t0), 1) if t_last > t0 else None})
            done_before = done
        ceilings.append(ceiling())
    for i, r in enumerate(rows):
        r.update({"ceiling_fps_before": ceilings[i], "ceiling_fps_after": ceilings[i + 1]})
    return {"segments": rows, "threads": threads, "ceiling_frames": ceiling_frames,
            "classified": sum(r["classified"] for r in rows), "frames": len(burst), **alternating_ratio(rows)}


def alternating_ratio(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Each segment's ratio to the mean of the ceilings either side of it (written into the rows), their
    median and range, and the figure: ``ratio_one_worker_to_ceiling`` = the time the segments' frames
    would take at their own ceilings over the time they took, i.e. the whole burst's frames/s against a
    ceiling that follows the host's drift segment by segment (later segments of the burst carry other
    frames, so their ratios differ for that reason too; the duration-weighted sum counts each for its time)."""
    at_ceiling = taken = 0.0
    for r in segments:
        mean = (r["ceiling_fps_before"] + r["ceiling_fps_after"]) / 2
        r["ratio"] = round(r["frames_per_s"] / mean, 3) if r["frames_per_s"] else None
        if r["frames_per_s"]:
            at_ceiling += r["classified"] / mean
            taken += r["classified"] / r["frames_per_s"]
    ratios = sorted(r["ratio"] for r in segments if r["ratio"] is not None)
    return {"ratio_one_worker_to_ceiling": round(at_ceiling / taken, 3) if taken else None,
            "ratio_segments_median": round(float(np.median(ratios)), 3) if ratios else None,
            "ratio_segments_range": [ratios[0], ratios[-1]] if ratios else None}


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every process on this machine, by pid, with a role read from
    its command line (this machine is shared: ``other`` shows what else ran during the run)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    parents: dict[int, int] = {}
    cmds: dict[int, str] = {}
    times: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(d.name)
        parents[pid] = int(fields[1])
        cmds[pid] = cmd
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()
    for pid, cpu in times.items():
        cmd, p, ours = cmds[pid], pid, False
        while p > 1:  # a descendant of this bench, or another session's process
            if p == me:
                ours = True
                break
            p = parents.get(p, 1)
        role = "bench (publisher, readers)" if pid == me else _role_of(cmd) if ours else OTHER_ROLE
        out[pid] = (role, cpu)
    return out


def _role_of(cmd: str) -> str:
    """The bench's own child process, named by its command line."""
    if "spillwatch.cli worker" in cmd:
        return "workers"
    if "spillwatch.cli aggregator" in cmd:
        return "aggregator"
    if "broker" in cmd and "--listener-url" in cmd:
        return "broker"
    if "redis-server" in cmd or "valkey" in cmd:
        return "redis"
    return "bench (other)"


def _cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float) -> dict[str, float]:
    """Cores used per role between two samples (CPU seconds / wall seconds)."""
    roles: dict[str, float] = {}
    for pid, (role, cpu) in after.items():
        used = cpu - (before[pid][1] if pid in before else 0.0)
        roles[role] = roles.get(role, 0.0) + used
    return {k: round(v / seconds, 2) for k, v in sorted(roles.items(), key=lambda kv: -kv[1]) if v > 0.01 * seconds}


def cpu_budget(cores: dict[str, float], done_fps: float, offered_fps: float, cpus: int | None) -> dict[str, Any]:
    """What a classified frame cost in CPU, by role, during the latency run (``cores`` from
    :func:`_cpu_by_role`, ``done_fps`` frames classified a second during it), and how many cores the
    offered rate would take at that cost: a run that does not keep up shows here by how much the
    machine is short. An estimate: a cost measured at the rate reached (batches fill more at a
    higher rate, so somewhat less a frame there); processes that are not this bench's are left out."""
    mine = {role: c for role, c in cores.items() if role != OTHER_ROLE}
    if done_fps <= 0:
        return {"ms_per_frame": None, "ms_per_frame_total": None, "cores_needed_at_offered_rate": None, "cpus": cpus}
    per = {role: round(1000.0 * c / done_fps, 2) for role, c in mine.items()}
    total = 1000.0 * sum(mine.values()) / done_fps
    return {"ms_per_frame": per, "ms_per_frame_total": round(total, 2),
            "cores_needed_at_offered_rate": round(total * offered_fps / 1000.0, 2), "cpus": cpus}


@dataclass
class Paced:
    """What the paced publisher did."""

    t_start: float
    t_end: float
    published: int
    behind_max_s: float


def _pace_cameras(s: Settings, source: FrameSource, spill_cams: set[str], *, cameras: int, fps: float,
                  seconds: float, spread: bool = False) -> Paced:
    """Publish ``cameras`` x ``fps`` frames in real time for ``seconds`` (capture time = publish time).
    Every camera at the same instant of each frame period, or with ``spread`` at its own phase of it
    (unsynchronised cameras, as at a site)."""
    from spillwatch.kafka import make_producer

    prod = make_producer(s, "bench-latency")
    period = 1.0 / fps
    t_start = time.time()
    published = 0
    behind_max = 0.0
    try:
        slots = 20 if spread else 1  # cameras publish in this many groups per frame period
        for tick in range(int(round(seconds * fps))):
            video_t = tick * period
            for c in range(cameras):
                slot = c * slots // cameras
                if c == 0 or slot != (c - 1) * slots // cameras:
                    delay = t_start + tick * period + slot * period / slots - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    behind_max = max(behind_max, -delay)
                cam = f"cam-{c:03d}"
                jpeg = source(c, cam in spill_cams, video_t, tick)
                h = FrameHeader(camera_id=cam, seq=tick, capture_time=datetime.now(UTC), width=480, height=360)
                prod.send(s.topics.frames, key=cam.encode(), value=encode_frame(h, jpeg))
                published += 1
        prod.flush(30)
    finally:
        prod.close()
    return Paced(t_start, time.time(), published, behind_max)


def latency(base: Settings, model: Path, logdir: Path, spill: Clip, clean: Clip, *, cameras: int, fps: float,
            seconds: float, workers: int, source: FrameSource | None = None) -> dict[str, Any]:
    s = _fresh(bench_settings(base, model, logdir), "lat")
    t = s.topics
    with ServiceGroup(s, logdir / "latency", cwd=REPO_ROOT) as group, \
            TopicReader(s, [t.classifications]) as cls_reader, TopicReader(s, [t.spill_alerts]) as alert_reader:
        cls_reader.start()
        alert_reader.start()
        threads = start_workers(group, s, workers)
        group.start("aggregator")
        _wait_workers(cls_reader, s, workers)
        spill_cams = {f"cam-{i:03d}" for i in range(max(1, cameras // 10))}
        cpu0, t_cpu0 = _cpu_seconds(), time.time()
        run = _pace_cameras(s, source or frame_source(None, None, spill, clean), spill_cams, cameras=cameras, fps=fps,
                            seconds=seconds, spread=source is not None)
        cores = _cpu_by_role(cpu0, _cpu_seconds(), time.time() - t_cpu0)
        backlog_at_end = run.published - len(classifications(cls_reader, "cam-"))
        drain_deadline = time.time() + 120
        while len(classifications(cls_reader, "cam-")) < run.published and time.time() < drain_deadline:
            time.sleep(0.1)
        drain_s = time.time() - run.t_end
        time.sleep(2.0 + 2 * s.aggregator.tick_interval_s)  # the last confirmations reach the alert topic
        classified = classifications(cls_reader, "cam-")
        alerts = [(r.received_at, SpillAlert.from_bytes(r.value)) for r in alert_reader.snapshot() if r.value]
    done_fps = (run.published - backlog_at_end) / (run.t_end - run.t_start)
    out = {
        "cameras": cameras, "fps": fps, "seconds": seconds, "workers": workers, "threads_per_worker": threads,
        "offered_fps": round(cameras * fps, 1), "published": run.published,
        "classified": len(classified),
        "classified_fps_during_run": round(done_fps, 1),
        "backlog_at_end": backlog_at_end, "drain_s": round(drain_s, 1),
        "publisher_behind_max_ms": round(run.behind_max_s * 1000, 1),
        "inferred_fraction": inferred_fraction(classified),
        "cameras_spread_over_the_frame_period": source is not None,
        "cores_used_during_run": cores,
        "cpu_budget": cpu_budget(cores, done_fps, cameras * fps, usable_cores()),
        "classified_distinct": len({(e.camera_id, e.seq) for _, e in classified}),
    }
    out.update(_latency_figures(classified, alerts, spill_cams, run.t_start + (spill.onset_s or 0.0)))
    return out


def _latency_figures(classified: list[tuple[float, Classification]], alerts: list[tuple[float, SpillAlert]],
                     spill_cams: set[str], onset_at: float) -> dict[str, Any]:
    """Distributions of the latency run (ms unless named _s)."""
    c2c, c2made, made2recv, infer = [], [], [], []
    for t_recv, e in classified:
        cap = e.capture_time.timestamp()
        c2c.append((t_recv - cap) * 1000)
        c2made.append((e.classified_at.timestamp() - cap) * 1000)
        made2recv.append((t_recv - e.classified_at.timestamp()) * 1000)
        infer.append(e.inference_ms)
    confirmed = [(t, a) for t, a in alerts if a.state.value == "confirmed"]
    return {
        "capture_to_classification_ms": dist(c2c),
        "capture_to_classification_created_ms": dist(c2made),
        "classification_created_to_received_ms": dist(made2recv),
        "inference_ms_per_frame_amortised": dist(infer),
        "spill_cameras": len(spill_cams),
        "confirmed_alerts": len(confirmed),
        "alerted_cameras": sorted({a.camera_id for _, a in confirmed}),
        "false_alert_cameras": sorted({a.camera_id for _, a in confirmed} - spill_cams),
        "capture_to_alert_ms": dist([(t - a.confirmed_at.timestamp()) * 1000 for t, a in confirmed]),
        "alert_emitted_to_received_ms": dist([(t - a.event_time.timestamp()) * 1000 for t, a in confirmed]),
        "first_suspicious_to_confirming_capture_s": dist([(a.confirmed_at - a.first_seen).total_seconds() for _, a in confirmed]),
        "clip_onset_to_alert_s": dist([t - onset_at for t, _ in confirmed]),
    }


# --------------------------------------------------------------------------- entry point


def run_bench(*, cameras: int, fps: float, seconds: float, worker_counts: list[int], width: int,
              throughput_frames: int, out: Path, embedded: bool, model: Path | None = None,
              settings: Settings | None = None, scene: str | None = None, gating: bool | None = None,
              ratio_segments: int = 0) -> dict[str, Any]:
    """``scene`` None: today's bench (every camera plays a clip); static | busy | mixed: see
    processors/bench_scenes.py (the JSON then names its scene). ``gating``: force change gating on
    or off in the workers (None: the settings'). ``ratio_segments`` >= 2: also one worker against the
    ceiling taken in turns (``alternating``), the throughput burst cut in that many segments."""
    if scene is not None and scene not in SCENES:
        raise SystemExit(f"--scene must be one of {', '.join(SCENES)}")
    if ratio_segments == 1 or ratio_segments < 0:
        raise SystemExit("--ratio-segments must be 0 (off) or at least 2")
    base = settings or get_settings()
    if gating is not None:
        base = base.model_copy(update={"gating": base.gating.model_copy(update={"enabled": gating})})
    model_path = Path(model or base.worker.model_path)
    if not model_path.is_file():
        raise SystemExit(f"bench pipeline needs the model: {model_path} not found (set SPILLWATCH_WORKER__MODEL_PATH)")
    spill, clean = load_clip("spill", width), load_clip("clean", width)
    source = scene_source(scene, spill, clean)
    logdir = out.parent / "bench-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    stack = None
    if embedded:
        from devstack.stack import LocalStack

        stack = LocalStack().start()
        base = base.model_copy(update={
            "kafka": base.kafka.model_copy(update={"bootstrap": stack.bootstrap, "profile": "local"}),
            "redis": base.redis.model_copy(update={"url": stack.redis_url}),
        })
    base = base.model_copy(update={"cameras": []})
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
        "usable_cores": usable_cores(), "cpu_model": _cpu_model(),
        "python": platform.python_version(), "broker": "embedded Tansu" if embedded else base.kafka.bootstrap,
        "partitions": base.kafka.partitions, "batch_size": base.worker.batch_size,
        "inference_batch": base.worker.inference_batch,
        "batch_timeout_s": base.worker.batch_timeout_s, "stream_buffer": base.worker.stream_buffer,
        "confirm": {"window": base.aggregator.window, "k": base.aggregator.confirm_k},
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # other work on the machine skews every figure
        "gating": {"enabled": base.gating.enabled, "refresh_s": base.gating.refresh_s, "threshold": base.gating.threshold,
                   "min_blocks": base.gating.min_blocks, "warm_ratio": base.gating.warm_ratio,
                   "warm_threshold": base.gating.warm_threshold, "hot_margin": base.gating.hot_margin,
                   "settle_frames": base.gating.settle_frames, "settle_margin": base.gating.settle_margin},
    }
    if scene is not None:
        result["scene"] = scene
    try:
        def ceiling() -> dict[str, Any]:
            # the model alone in the worker's inference runs (a take's frames to infer run in runs of this many)
            return profile(model_path, spill, base.worker.inference_batch, threads_per_worker(base, 1), split=base.worker.inference_split)

        result["profile"] = ceiling()
        _print_profile(result["profile"])
        result["throughput"] = []
        for n in worker_counts:
            r = throughput(base, model_path, logdir, spill, n, throughput_frames, source, fps)
            result["throughput"].append(r)
            print(f"throughput  workers={n} threads={r['threads_per_worker']}: {r['classified']}/{r['frames']} frames "
                  f"in {r['elapsed_s']} s = {r['frames_per_s']} frames/s (per worker {r['per_worker']}, "
                  f"inferred {r['inferred_fraction']}); inference {r['inference_ms_per_frame_median']} ms a frame "
                  f"(median), cores used {r['cores_used_during_run']}", flush=True)
            if n == 1:  # the ceiling again, right after the run it is the denominator of: see bracket()
                result["profile_after"] = ceiling()
                _print_profile(result["profile_after"], "after")
        one = next((r for r in result["throughput"] if r["workers"] == 1 and r["frames_per_s"]), None)
        if one:
            prof = result["profile"]
            e2e = 1000.0 / one["frames_per_s"]
            dec, inf = prof["decode_preprocess_ms_per_frame"], prof["inference_ms_per_frame"]
            result["where_time_goes_one_worker_ms_per_frame"] = {
                "end_to_end": round(e2e, 2), "decode_preprocess": dec, "inference": inf,
                "kafka_faust_serialisation_other": round(max(0.0, e2e - dec - inf), 2),
            }
            w = result["where_time_goes_one_worker_ms_per_frame"]
            print(f"time/frame  one worker: {w['end_to_end']} ms end to end = decode+preprocess {dec} + inference {inf} "
                  f"+ Kafka/Faust/serialisation/other {w['kafka_faust_serialisation_other']}", flush=True)
            result["ratio_one_worker_to_ceiling"] = round(one["frames_per_s"] / prof["ceiling_fps_one_worker"], 3)
            if "profile_after" in result:
                result["ceiling_bracket"] = bracket(one["frames_per_s"], prof, result["profile_after"])
                b = result["ceiling_bracket"]
                print(f"ratio       one worker / ceiling: {result['ratio_one_worker_to_ceiling']} (ceiling before the run), "
                      f"{b['ratio_one_worker_to_ceiling']} (mean of before and after); the ceiling moved x{b['drift']} "
                      f"during the run{'' if b['steady'] else ': the host drifted, this ratio does not resolve 10 % effects'}",
                      flush=True)
        if ratio_segments >= 2:
            alt = alternating(base, model_path, logdir, spill, throughput_frames, ratio_segments, source, fps)
            result["alternating"] = alt
            print(f"alternating one worker / ceiling, {ratio_segments} segments each between two ceiling passes: "
                  f"{alt['ratio_one_worker_to_ceiling']} (segments {[r['ratio'] for r in alt['segments']]}; "
                  f"ceilings {[r['ceiling_fps_before'] for r in alt['segments']] + [alt['segments'][-1]['ceiling_fps_after']]} "
                  f"frames/s)", flush=True)
        two = next((r for r in result["throughput"] if r["workers"] == 2 and r["frames_per_s"]), None)
        if one and two:
            result["ratio_two_workers_to_one"] = round(two["frames_per_s"] / one["frames_per_s"], 3)
        result["latency"] = latency(base, model_path, logdir, spill, clean, cameras=cameras, fps=fps,
                                    seconds=seconds, workers=max(worker_counts), source=source)
        result["gating"]["inferred_fraction"] = result["latency"]["inferred_fraction"]
        _print_latency(result["latency"])
    finally:
        result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
        if stack is not None:
            stack.stop()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def _cpu_model() -> str:
    """The processor's name (Linux ``/proc/cpuinfo``), so that figures from two hosts are not compared blind."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _print_profile(p: dict[str, Any], label: str = "profile") -> None:
    print(f"{label:<11} model {p['model_version']} ({p['input_size']} px), batch {p['batch']}, {p['threads']} threads ({p.get('split', 'operators')} split), "
          f"{p['frame_bytes_mean'] // 1000} KB JPEG: decode+preprocess {p['decode_preprocess_ms_per_frame']} ms, "
          f"inference {p['inference_ms_per_frame']} ms per frame -> ceiling {p['ceiling_fps_one_worker']} frames/s "
          f"per worker process", flush=True)


def _print_latency(r: dict[str, Any]) -> None:
    rows = [
        ("capture -> classification received", r["capture_to_classification_ms"]),
        ("  capture -> classification created", r["capture_to_classification_created_ms"]),
        ("  created -> received", r["classification_created_to_received_ms"]),
        ("  inference per frame (amortised)", r["inference_ms_per_frame_amortised"]),
        ("capture(confirming) -> alert received", r["capture_to_alert_ms"]),
        ("  alert emitted -> received", r["alert_emitted_to_received_ms"]),
    ]
    print(f"latency     {r['cameras']} cameras x {r['fps']} fps = {r['offered_fps']} frames/s offered for {r['seconds']} s, "
          f"{r['workers']} worker(s): classified {r['classified']}/{r['published']}, "
          f"{r['classified_fps_during_run']} frames/s during the run, backlog at end {r['backlog_at_end']} "
          f"(drained in {r['drain_s']} s)")
    print(f"{'':4}{'stage':42}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, d in rows:
        print(f"{'':4}{name:42}{d['n']:>6}{str(d['p50']):>10}{str(d['p99']):>10}{str(d['max']):>10}")
    print(f"    inferred fraction (the rest reused by change gating): {r['inferred_fraction']}; cores used during the run: "
          f"{r['cores_used_during_run']}")
    b = r["cpu_budget"]
    if b["ms_per_frame"]:
        roles = ", ".join(f"{k} {v}" for k, v in b["ms_per_frame"].items())
        print(f"    CPU per classified frame (ms): {roles} = {b['ms_per_frame_total']}; the offered "
              f"{r['offered_fps']} frames/s would take ~{b['cores_needed_at_offered_rate']} cores at that cost "
              f"(this machine: {b['cpus']})")
    print(f"    alerts: {r['confirmed_alerts']} confirmed on {len(r['alerted_cameras'])} of {r['spill_cameras']} spill "
          f"cameras, false-alert cameras {r['false_alert_cameras']}; clip onset -> alert "
          f"p50 {r['clip_onset_to_alert_s']['p50']} s", flush=True)


if __name__ == "__main__":  # pragma: no cover
    run_bench(cameras=4, fps=2, seconds=10, worker_counts=[1], width=480, throughput_frames=200,
              out=Path("var/bench/pipeline.json"), embedded=True)
