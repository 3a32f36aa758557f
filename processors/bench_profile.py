"""Where a saturated classifier worker spends its time: py-spy on one ``spillwatch worker``.

    python -m processors.bench_profile [--frames 6000] [--seconds 15] [--scene busy] [--out var/bench/worker-profile]

Starts a private broker + Redis, one worker (two ONNX threads, like ``bench pipeline``'s one-worker
run), publishes a burst of frames, and samples the worker with ``py-spy record`` (needs the
``py-spy`` package: ``pip install py-spy``) while it is saturated. Writes the collapsed stacks
(``<out>.txt``), a speedscope file (``<out>.speedscope.json``), and prints the functions with the
most samples: own ("self") and inclusive ("total"), per thread kind. docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from processors.bench import _burst, _fresh, _publish, _wait_workers, bench_settings, load_clip, start_workers
from processors.bench_scenes import build_static, frame_source
from spillwatch.settings import REPO_ROOT, get_settings
from spillwatch.supervisor import ServiceGroup
from spillwatch.topic_reader import TopicReader


def summarise(collapsed: Path, top: int = 25) -> str:
    """Top functions by own and by inclusive samples from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not stack:
            continue
        n = int(n_s)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples", "", "own (self) samples:"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive samples:"]
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--scene", choices=["busy", "static"], default="busy")
    ap.add_argument("--out", type=Path, default=Path("var/bench/worker-profile"))
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    from devstack.stack import LocalStack

    base = get_settings()
    model = Path(base.worker.model_path)
    spill, clean = load_clip("spill", 480), load_clip("clean", 480)
    source = None
    if args.scene == "static":
        static = build_static(spill.jpegs, clean.jpegs, fps=spill.fps, onset_s=spill.onset_s or 0.0, grow_s=5.0)
        source = frame_source("static", static, spill, clean)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    logdir = args.out.parent / "profile-logs"
    stack = LocalStack().start()
    try:
        base = base.model_copy(update={
            "cameras": [],
            "kafka": base.kafka.model_copy(update={"bootstrap": stack.bootstrap, "profile": "local"}),
            "redis": base.redis.model_copy(update={"url": stack.redis_url}),
        })
        s = _fresh(bench_settings(base, model, logdir), "prof")
        with ServiceGroup(s, logdir, cwd=REPO_ROOT) as group, TopicReader(s, [s.topics.classifications]) as reader:
            reader.start()
            start_workers(group, s, 1)
            _wait_workers(reader, s, 1)
            worker = group.children[0]
            _publish(s, _burst(spill, args.frames, source, 2.0))
            time.sleep(1.0)  # saturated from here
            for fmt, suffix in (("raw", ".txt"), ("speedscope", ".speedscope.json")):
                subprocess.run([spy, "record", "--pid", str(worker.pid), "--duration", str(int(args.seconds / 2)),
                                "--rate", "200", "--format", fmt, "--output", str(args.out) + suffix, "--nonblocking"],
                               check=True, stdout=subprocess.DEVNULL)
    finally:
        stack.stop()
    print(summarise(Path(str(args.out) + ".txt")))


if __name__ == "__main__":  # pragma: no cover
    main()
