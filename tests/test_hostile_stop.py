"""Issue 9 item 1: a stopping worker commits only what it finished.

Faust acks a ``take_events`` batch in a ``finally`` when the agent is torn down, so SIGTERM in the
middle of a batch (a send that hangs, a retry loop) used to mark the whole batch done and commit it:
those records were lost. The agents now hold a reference on each message until the batch is done
(``processors.app.AckWhenDone``). A real Faust worker process on the real broker holds a batch it
can never finish; SIGTERM; the consumer group's committed offset must not cover it. The ``plain``
run (the old agent pattern) is the control: it shows the loss this guards against.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

from spillwatch.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration


def committed(s: Settings, group: str) -> int | None:
    from spillwatch.kafka import make_admin

    admin = make_admin(s)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    got = [o.offset for tp, o in offsets.items() if tp.topic == s.topics.frames and o.offset is not None and o.offset >= 0]
    return max(got) if got else None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["hold", "plain"])
def test_sigterm_mid_batch_commits_none_of_the_unfinished_batch(local_stack: Any, mode: str) -> None:
    import uuid

    from spillwatch.kafka import create_topics, make_producer
    from spillwatch.supervisor import child_env

    prefix = f"stop-{mode}-{uuid.uuid4().hex[:6]}."
    s = Settings(kafka={"bootstrap": local_stack.bootstrap, "topic_prefix": prefix, "partitions": 1})
    create_topics(s, partitions=1)
    prod = make_producer(s)
    for i in range(3):  # one record per batch: exact end offsets on the local broker
        prod.send(s.topics.frames, key=b"cam", value=b"frame %d" % i).get(10)
    prod.close()
    env = child_env(None, {"PYTHONPATH": str(REPO_ROOT)})
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.faust_probe", s.kafka.bootstrap, prefix, mode],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("HOLDING"):
                break
        else:
            pytest.fail("the probe never took a batch")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code is not None  # it stopped by itself on SIGTERM (a clean stop, with its commit)
    done = committed(s, f"{prefix}spillwatch-classifier")
    if mode == "hold":
        assert done in (None, 0), f"an unfinished batch was committed up to offset {done}"
    else:
        assert done == 3, "control: Faust's own acks commit the unfinished batch at stop (the loss guarded against)"
