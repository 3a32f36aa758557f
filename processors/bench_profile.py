"""Where a saturated classifier worker spends its time: py-spy on one ``spillwatch worker``.

    python -m processors.bench_profile [--frames 10000] [--seconds 15] [--scene busy] [--out var/bench/worker-profile]

Starts a private broker + Redis, one worker (its ``worker.intra_op_threads`` ONNX threads, never more
than the usable cores, like ``bench pipeline``'s one-worker run), publishes a burst of frames, and
samples the worker with ``py-spy record`` (needs the ``py-spy`` package: ``pip install py-spy``) while
it is saturated. Writes the collapsed stacks (``<out>.txt``), a speedscope file
(``<out>.speedscope.json``), and prints the functions with the most samples: own ("self") and
inclusive ("total"). docs/performance.md quotes it.

A second recording at the same time includes idle samples (``--idle --threads``, ``<out>.idle.txt``):
per thread, the share of the time it ran, and where it sat idle. The classifier thread idle *inside*
an OpenCV or ONNX Runtime call is waiting for the GIL to come back after the call (those calls release
it; with one ONNX thread nothing else makes the calling thread wait there).

A third, at the same time, keeps only the thread holding the GIL at each sample (``--gil``,
``<out>.gil.txt``): how much of the time the GIL is held, and by which Python (with the GIL held most of
the time, that Python bounds the worker however many cores it has).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from processors.bench import _burst, _fresh, _publish, _wait_workers, bench_settings, load_clip, scene_source, start_workers
from spillwatch.settings import REPO_ROOT, get_settings
from spillwatch.supervisor import ServiceGroup
from spillwatch.topic_reader import TopicReader

RATE = 200  # py-spy samples a second


def summarise(collapsed: Path, top: int = 25) -> str:
    """Top functions by own and by inclusive samples from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for stack, n in _stacks(collapsed).items():
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


def gil_summary(gil: Path, ticks: int, top: int = 25) -> str:
    """A ``--gil`` recording (only the thread holding the GIL is sampled, none when no thread holds it)
    of ``ticks`` sampling ticks: the share of the time the GIL was held, then by function."""
    held = sum(_stacks(gil).values())
    head = f"holding the GIL: {held} of {ticks} samples ({100 * held / max(1, ticks):.0f} % of the time one thread held it); by function:"
    return head + ("\n" + summarise(gil, top).split("\n", 2)[2] if held else "")


def _stacks(collapsed: Path) -> collections.Counter[str]:
    """Samples by stack from py-spy's raw (collapsed) output: ``frame;frame;... count`` a line."""
    out: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        if stack:
            out[stack] += int(n_s)
    return out


@dataclass
class ThreadTime:
    """One thread of a profile: samples, those in which it was running, and where it sat idle."""

    samples: int = 0
    running: int = 0
    idle_at: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def running_share(self) -> float:
        return round(self.running / max(1, self.samples), 3)


def thread_waits(active: Path, with_idle: Path) -> dict[str, ThreadTime]:
    """Per thread (the first frame of ``--threads`` stacks): samples, those it was running in, and the
    leaf functions where it was idle (samples of the idle recording beyond the active one's, stack by
    stack). Both files come from recordings of the same seconds (py-spy ``--nonblocking``), so their
    difference is the idle time up to sampling noise."""
    act, all_ = _stacks(active), _stacks(with_idle)
    out: dict[str, ThreadTime] = {}
    for stack, n in all_.items():
        frames = stack.split(";")
        t = out.setdefault(frames[0], ThreadTime())
        run = min(n, act.get(stack, 0))
        t.samples += n
        t.running += run
        if n > run:
            t.idle_at[frames[-1]] += n - run
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000, help="burst size: keep the worker saturated through the three recordings (1.5 x --seconds)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--scene", choices=["busy", "static"], default="busy")
    ap.add_argument("--out", type=Path, default=Path("var/bench/worker-profile"))
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    from devstack.stack import LocalStack

    base = get_settings()
    model = Path(base.worker.model_path)
    spill, clean = load_clip("spill", 480), load_clip("clean", 480)
    source = scene_source(args.scene, spill, clean)  # the scenes of ``bench pipeline --scene``
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

            def record(fmt: str, suffix: str, *extra: str) -> list[str]:
                """A py-spy recording of the worker for half of ``--seconds``, written to ``<out><suffix>``."""
                return [spy, "record", "--pid", str(worker.pid), "--duration", str(int(args.seconds / 2)), "--rate", str(RATE),
                        "--format", fmt, *extra, "--output", str(args.out) + suffix, "--nonblocking"]

            for fmt, suffix in (("raw", ".txt"), ("speedscope", ".speedscope.json")):
                subprocess.run(record(fmt, suffix), check=True, stdout=subprocess.DEVNULL)
            # the same seconds three times: with and without idle samples, by thread (who ran, who waited
            # where), and only the thread holding the GIL at each sample (the Python every other thread waits for)
            recordings = [subprocess.Popen(record("raw", suffix, *extra), stdout=subprocess.DEVNULL)
                          for extra, suffix in ((["--threads"], ".threads.txt"), (["--threads", "--idle"], ".idle.txt"), (["--gil"], ".gil.txt"))]
            for p in recordings:
                if p.wait() != 0:
                    raise SystemExit(f"py-spy failed ({p.args!r})")
    finally:
        stack.stop()
    print(summarise(Path(str(args.out) + ".txt")))
    print("\n" + gil_summary(Path(str(args.out) + ".gil.txt"), ticks=int(args.seconds / 2) * RATE))
    print("\nby thread (running share; where it sat idle, samples):")
    waits = thread_waits(Path(str(args.out) + ".threads.txt"), Path(str(args.out) + ".idle.txt"))
    for thread, t in sorted(waits.items(), key=lambda kv: -kv[1].samples):
        print(f"  {thread}: {t.samples} samples, running {t.running_share}")
        for leaf, n in t.idle_at.most_common(6):
            print(f"      idle {n:5d}  {leaf}")


if __name__ == "__main__":  # pragma: no cover
    main()
