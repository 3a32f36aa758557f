"""Batches in flight in the classifier worker (processors/inflight.py): classification runs ahead of
the broker's acknowledgements, sends keep batch order, a lone batch is never held back, a broker
outage bounds what is in flight, a failed send reaches the agent, a stop acks nothing unfinished."""

from __future__ import annotations

import asyncio

import pytest

from processors.inflight import InFlight


class Stage:
    """Stand-ins for the classifier's two steps that record what happened when."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.classify_gate: dict[int, asyncio.Event] = {}
        self.send_gate: dict[int, asyncio.Event] = {}
        self.fail_send: set[int] = set()

    def _gate(self, gates: dict[int, asyncio.Event], n: int) -> asyncio.Event:
        return gates.setdefault(n, asyncio.Event())

    async def classify(self, n: int) -> str:
        self.log.append(f"classify {n}")
        if n in self.classify_gate:
            await self.classify_gate[n].wait()
        return f"result {n}"

    async def finish(self, n: int, result: str) -> None:
        assert result == f"result {n}"
        self.log.append(f"send {n}")
        if n in self.send_gate:
            await self.send_gate[n].wait()
        if n in self.fail_send:
            raise ConnectionError(f"send {n} failed")
        self.log.append(f"acked {n}")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_lone_batch_is_sent_without_waiting_for_the_next() -> None:
    async def run() -> list[str]:
        st = Stage()
        inflight: InFlight[int, str] = InFlight(st.classify, st.finish, ahead=2)
        await inflight.submit(1)
        await settle()  # no second batch ever comes (a camera's last frame, a quiet site)
        inflight.cancel()
        return st.log

    assert asyncio.run(run()) == ["classify 1", "send 1", "acked 1"]


def test_sends_keep_batch_order_while_the_next_batch_is_classified() -> None:
    async def run() -> list[str]:
        st = Stage()
        st.classify_gate[1] = asyncio.Event()  # batch 1 is slow to classify, batch 2 is quick
        st.send_gate[2] = asyncio.Event()
        inflight: InFlight[int, str] = InFlight(st.classify, st.finish, ahead=2)
        await inflight.submit(1)
        await inflight.submit(2)
        await settle()
        assert "send 2" not in st.log  # 2 is classified but must not overtake 1
        st.classify_gate[1].set()
        await settle()
        assert st.log.index("acked 1") < st.log.index("send 2")
        await inflight.submit(3)  # classified while batch 2's send waits for the broker
        await settle()
        assert "classify 3" in st.log and "send 3" not in st.log
        st.send_gate[2].set()
        await inflight.drain()
        return st.log

    log = asyncio.run(run())
    assert [x for x in log if x.startswith("send")] == ["send 1", "send 2", "send 3"]
    assert log.index("classify 3") < log.index("acked 2")  # it ran ahead of the acknowledgement


def test_a_broker_outage_bounds_the_batches_in_flight() -> None:
    async def run() -> tuple[list[str], bool]:
        st = Stage()
        st.send_gate[1] = asyncio.Event()  # the broker is away: batch 1's send holds
        inflight: InFlight[int, str] = InFlight(st.classify, st.finish, ahead=2)
        for n in (1, 2, 3):
            await inflight.submit(n)
        await settle()
        fourth = asyncio.ensure_future(inflight.submit(4))
        await settle()
        blocked = not fourth.done()  # 1 sending, 2 and 3 waiting: the agent takes no more records
        st.send_gate[1].set()
        await fourth
        await inflight.drain()
        return st.log, blocked

    log, blocked = asyncio.run(run())
    assert blocked
    assert [x for x in log if x.startswith("acked")] == ["acked 1", "acked 2", "acked 3", "acked 4"]


def test_a_failed_send_reaches_the_agent_and_nothing_after_it_is_sent() -> None:
    async def run() -> list[str]:
        st = Stage()
        st.fail_send.add(1)
        inflight: InFlight[int, str] = InFlight(st.classify, st.finish, ahead=1)
        await inflight.submit(1)
        await settle()
        with pytest.raises(ConnectionError, match="send 1 failed"):
            for n in (2, 3, 4):
                await inflight.submit(n)
                await settle()
        inflight.cancel()
        return st.log

    log = asyncio.run(run())
    assert "send 1" in log and "acked 1" not in log
    assert not any(x in log for x in ("send 2", "send 3", "send 4"))


def test_a_stop_leaves_unfinished_batches_unacked() -> None:
    async def run() -> list[str]:
        st = Stage()
        st.send_gate[1] = asyncio.Event()
        st.classify_gate[2] = asyncio.Event()
        inflight: InFlight[int, str] = InFlight(st.classify, st.finish, ahead=2)
        await inflight.submit(1)
        await inflight.submit(2)
        await settle()
        inflight.cancel()  # SIGTERM mid-batch
        st.send_gate[1].set()
        st.classify_gate[2].set()
        await settle()
        return st.log

    log = asyncio.run(run())
    assert "acked 1" not in log and "send 2" not in log


def test_ahead_must_be_positive() -> None:
    async def run() -> None:
        InFlight(Stage().classify, Stage().finish, ahead=0)

    with pytest.raises(ValueError):
        asyncio.run(run())
