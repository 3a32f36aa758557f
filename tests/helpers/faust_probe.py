"""A Faust worker whose agent takes one batch and never finishes it (a send that hangs), for the
stop test (tests/test_hostile_stop.py). Run as ``python -m tests.helpers.faust_probe BOOTSTRAP PREFIX
MODE``; MODE ``hold`` wraps the batch in the product's ``AckWhenDone``, ``plain`` does not (the
pattern the agents had before). Prints ``HOLDING <n>`` when it holds a batch; SIGTERM stops it the
way it stops ``spillwatch worker`` (Faust's worker shuts the app down and commits)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path


def main(bootstrap: str, prefix: str, mode: str) -> None:
    import faust
    from faust.worker import Worker

    from processors.app import AckWhenDone, _faust_kwargs, _raw_topic
    from spillwatch.settings import Settings

    s = Settings(kafka={"bootstrap": bootstrap, "topic_prefix": prefix, "partitions": 1},
                 data_dir=Path(tempfile.mkdtemp(prefix="faust-probe-")))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust.App(**_faust_kwargs(s, "classifier", None))

    @app.agent(_raw_topic(app, s.topics.frames))
    async def take(stream: object) -> None:
        async for events in stream.take_events(8, within=0.5):  # type: ignore[attr-defined]
            if mode == "hold":
                with AckWhenDone(events):
                    print(f"HOLDING {len(events)}", flush=True)
                    await asyncio.Event().wait()  # never finishes
            else:
                print(f"HOLDING {len(events)}", flush=True)
                await asyncio.Event().wait()

    worker = Worker(app, loop=loop, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main(*sys.argv[1:4])
