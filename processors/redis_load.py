"""``spillwatch bench redis``: Redis operations per frame and the aggregator's throughput, measured.

The capacity plan (docs/scaling.md) needs two figures no other benchmark gives: how many Redis
commands the pipeline sends per frame, and how many classifications per second one aggregator
process decides. Both are measured here with the real services (``spillwatch worker`` and
``spillwatch aggregator`` subprocesses, as in ``spillwatch bench pipeline``), on a private embedded
broker + Redis, by reading Redis's own counters (``INFO commandstats``) before and after:

* for each scene (``clean``: the clean clip on every camera, no frame suspicious; ``spill``: the
  spill clip on every camera, so frames turn suspicious, incidents confirm and alerts are published),
  ``frames`` frames of ``cameras`` cameras at 2 fps capture spacing go through worker + aggregator;
  commands per frame = (commands after - before - the idle timer's commands over the same time) / frames;
* aggregator throughput: the same frames are classified first with the aggregator stopped, then one
  aggregator is started on the full ``classifications`` backlog and the classifications it has
  taken (its cameras' frame counters) are counted per second while it drains it, with its
  transactions (``EXEC``: one per batch of ``aggregator.batch_size``).

Writes JSON (``--out``, e.g. docs/bench/redis-ops.json) and prints a table.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from processors.bench import (
    Clip,
    _fresh,
    _publish,
    _wait_workers,
    bench_settings,
    classifications,
    load_clip,
    start_workers,
)
from spillwatch.events import FrameHeader
from spillwatch.model import card_path_for
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import REPO_ROOT, Settings, get_settings
from spillwatch.supervisor import ServiceGroup
from spillwatch.topic_reader import TopicReader

# commands this benchmark sends itself (polling), never counted
_OWN = {"info", "ping", "hello", "client|setinfo", "client"}
SCENES = ("clean", "spill")


def command_counts(info: dict[str, Any]) -> dict[str, int]:
    """``{command: calls}`` from a parsed ``INFO commandstats`` answer (redis-py's ``info()`` dict)."""
    out: dict[str, int] = {}
    for key, val in info.items():
        if key.startswith("cmdstat_") and isinstance(val, dict):
            name = key[len("cmdstat_") :]
            if name not in _OWN:
                out[name] = int(val.get("calls", 0))
    return out


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def per_frame(delta: dict[str, int], idle_per_s: dict[str, float], seconds: float, frames: int) -> dict[str, float]:
    """Commands per frame after removing what the idle timers send over the same time."""
    out: dict[str, float] = {}
    for k, v in delta.items():
        net = v - idle_per_s.get(k, 0.0) * seconds
        if net > 0:
            out[k] = round(net / frames, 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _frames(clip: Clip, cameras: int, per_camera: int, tag: str) -> list[tuple[str, FrameHeader, bytes]]:
    """Camera-interleaved frames, seq increasing, capture times 0.5 s apart (2 fps) ending now."""
    start = datetime.now(UTC) - timedelta(seconds=per_camera * 0.5)
    out = []
    for i in range(per_camera):
        t = start + timedelta(seconds=i * 0.5)
        jpeg = clip.jpegs[int(i * 0.5 * clip.fps) % len(clip.jpegs)]
        for c in range(cameras):
            cam = f"{tag}-{c:03d}"
            out.append((cam, FrameHeader(camera_id=cam, seq=i, capture_time=t, width=480, height=360), jpeg))
    return out


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process, in MiB (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class Counters:
    def __init__(self, url: str) -> None:
        import redis

        self.r = redis.Redis.from_url(url)

    def read(self) -> dict[str, int]:
        return command_counts(self.r.info("commandstats"))

    def close(self) -> None:
        self.r.close()


def _until(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.1)


def _settle(counters: Counters, quiet_s: float = 1.5, timeout_s: float = 60) -> dict[str, int]:
    """Counters once nothing but the timers moves them: no EXEC for ``quiet_s``."""
    last = counters.read()
    quiet_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.25)
        now = counters.read()
        if now.get("exec", 0) != last.get("exec", 0):
            quiet_since = time.monotonic()
        last = now
    return last


def server_capacity(url: str, requests: int = 100_000, clients: int = 50, repeats: int = 3) -> dict[str, Any]:
    """Commands/s the Redis at ``url`` answers, unpipelined (as the aggregator's transactions are):
    ``redis-benchmark``/``valkey-benchmark`` SET and GET, 256-byte values, on this machine (the
    benchmark client shares the CPU, so this is a floor); the median of ``repeats`` runs."""
    exe = shutil.which("valkey-benchmark") or shutil.which("redis-benchmark")
    if not exe:
        return {"measured": False, "reason": "no redis-benchmark/valkey-benchmark on this machine"}
    u = urlparse(url)
    cmd = [exe, "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 6379), "-t", "set,get", "-n", str(requests),
           "-c", str(clients), "-P", "1", "-d", "256", "--csv"]
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
        for row in csv.reader(io.StringIO(out)):
            if row and row[0] != "test":
                runs.setdefault(row[0].lower(), []).append(float(row[1]))
    rps = {k: statistics.median(v) for k, v in runs.items()}
    return {"measured": True, "tool": Path(exe).name, "clients": clients, "pipeline": 1, "value_bytes": 256,
            "repeats": repeats, "commands_per_s": {k: round(v) for k, v in sorted(rps.items())},
            "commands_per_s_min": round(min(rps.values()))}


def scene_ops(base: Settings, model: Path, logdir: Path, clip: Clip, scene: str, cameras: int,
              per_camera: int, idle_s: float) -> dict[str, Any]:
    """Worker + aggregator on one scene: Redis commands per frame."""
    s = _fresh(bench_settings(base, model, logdir), f"redis-{scene}")
    svc = ServiceGroup(s, logdir / f"redis-{scene}", cwd=REPO_ROOT)
    reader = TopicReader(s, [s.topics.classifications]).start()
    counters = Counters(s.redis.url)
    try:
        start_workers(svc, s, 1)
        worker = svc.children[-1]
        aggregator = svc.start("aggregator")
        _wait_workers(reader, s, 1)
        _settle(counters)
        # idle: only the aggregator's timer (escalation check, outbox flush) talks to Redis
        t0, c0 = time.monotonic(), counters.read()
        time.sleep(idle_s)
        t1, c1 = time.monotonic(), counters.read()
        idle = {k: v / (t1 - t0) for k, v in diff(c1, c0).items()}
        frames = _frames(clip, cameras, per_camera, scene)
        before, t_start = counters.read(), time.monotonic()
        _publish(s, frames)
        _until(lambda: len(classifications(reader, f"{scene}-")) >= len(frames), 180, f"{scene}: every frame classified")
        after = _settle(counters)
        seconds = time.monotonic() - t_start
        delta = diff(after, before)
        ops = per_frame(delta, idle, seconds, len(frames))
        rss = {role: peak_rss_mb(child.pid) if child.pid is not None else None for role, child in (("worker", worker), ("aggregator", aggregator))}
        mine = [r.value for r in reader.snapshot() if r.value and f'"camera_id":"{scene}-'.encode() in r.value]
        return {"scene": scene, "cameras": cameras, "frames": len(frames), "seconds": round(seconds, 1),
                "peak_rss_mib": rss, "frame_bytes_mean": round(sum(len(j) for _, _, j in frames) / len(frames)),
                "classification_bytes_mean": round(sum(len(v) for v in mine) / max(1, len(mine))),
                "idle_commands_per_s": {k: round(v, 2) for k, v in sorted(idle.items())},
                "commands": delta, "commands_per_frame": ops,
                "total_per_frame": round(sum(ops.values()), 2)}
    finally:
        counters.close()
        reader.close()
        svc.stop()


def decided(r: Any, pattern: str) -> int:
    """Classifications the aggregator has taken so far: the sum of its cameras' frame counters
    (a transaction decides a whole batch, so EXECs no longer count decisions)."""
    keys = list(r.scan_iter(match=pattern, count=1000))
    return sum(int(json.loads(v).get("frames", 0)) for v in r.mget(keys) if v) if keys else 0


def aggregator_rate(base: Settings, model: Path, logdir: Path, clip: Clip, cameras: int, per_camera: int) -> dict[str, Any]:
    """One aggregator draining a backlog of classifications: decisions (classifications taken) per second."""
    s = _fresh(bench_settings(base, model, logdir), "redis-agg")
    svc = ServiceGroup(s, logdir / "redis-agg", cwd=REPO_ROOT)
    reader = TopicReader(s, [s.topics.classifications]).start()
    counters = Counters(s.redis.url)
    try:
        start_workers(svc, s, 1)
        _wait_workers(reader, s, 1)
        frames = _frames(clip, cameras, per_camera, "agg")
        _publish(s, frames)
        _until(lambda: len(classifications(reader, "agg-")) >= len(frames), 180, "backlog classified")
        svc.stop()  # the worker: the aggregator gets the CPU to itself
        n = reader.count()  # every classification on the topic (warm-up ones included)
        start_exec = counters.read().get("exec", 0)
        svc.start("aggregator")
        samples: list[tuple[float, int, int]] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = decided(counters.r, RedisKeys(s.redis.key_prefix).agg_state("*"))
            samples.append((time.monotonic(), done, counters.read().get("exec", 0) - start_exec))
            if done >= n:
                break
            time.sleep(0.2)
        moving = [x for x in samples if 0 < x[1] < n]
        if len(moving) < 2:
            raise RuntimeError(f"aggregator drained {samples[-1][1]} of {n} classifications: too few samples")
        (ta, da, ea), (tb, db, eb) = moving[0], moving[-1]
        return {"classifications": n, "decisions_per_s": round((db - da) / (tb - ta), 1),
                "transactions_per_s": round((eb - ea) / (tb - ta), 1),
                "decisions_per_transaction": round((db - da) / max(1, eb - ea), 1),
                "batch_size": s.aggregator.batch_size, "drain_s": round(samples[-1][0] - moving[0][0], 1)}
    finally:
        counters.close()
        reader.close()
        svc.stop()


def run(*, cameras: int, per_camera: int, out: Path, idle_s: float = 6.0, settings: Settings | None = None) -> dict[str, Any]:
    from devstack.stack import LocalStack

    base = settings or get_settings()
    model = Path(base.worker.model_path)
    if not model.is_file():
        raise SystemExit(f"bench redis needs the model: {model} not found (set SPILLWATCH_WORKER__MODEL_PATH)")
    logdir = out.parent / "bench-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    clips = {"clean": load_clip("clean", 480), "spill": load_clip("spill", 480)}
    stack = LocalStack().start()
    base = base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"bootstrap": stack.bootstrap, "profile": "local"}),
        "redis": base.redis.model_copy(update={"url": stack.redis_url}),
        "cameras": [],
    })
    result: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "redis": "embedded (valkey-server or redis-server, as `spillwatch stack up`)",
        "model_version": None, "batch_size": base.worker.batch_size,
        "confirm": {"window": base.aggregator.window, "k": base.aggregator.confirm_k},
        "method": "INFO commandstats before/after N frames through `spillwatch worker` + `spillwatch aggregator`; "
                  "the aggregator timer's idle rate is subtracted",
    }
    card = card_path_for(model)
    if card.is_file():
        result["model_version"] = json.loads(card.read_text()).get("version")
    try:
        result["scenes"] = {}
        for scene in SCENES:
            r = scene_ops(base, model, logdir, clips[scene], scene, cameras, per_camera, idle_s)
            result["scenes"][scene] = r
            print(f"redis ops   scene {scene}: {r['frames']} frames -> {r['total_per_frame']} commands/frame "
                  f"{r['commands_per_frame']}", flush=True)
        result["redis_server"] = server_capacity(base.redis.url)
        print(f"redis       server answers {result['redis_server'].get('commands_per_s')} commands/s (unpipelined)",
              flush=True)
        # a backlog 3x a scene's, so the drain lasts long enough to time
        result["aggregator"] = aggregator_rate(base, model, logdir, clips["clean"], cameras, 3 * per_camera)
        a = result["aggregator"]
        print(f"aggregator  {a['classifications']} classifications drained at {a['decisions_per_s']} decisions/s "
              f"(one process; {a['transactions_per_s']} transactions/s, {a['decisions_per_transaction']} decisions each)",
              flush=True)
    finally:
        stack.stop()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result
