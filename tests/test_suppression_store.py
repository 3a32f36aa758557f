"""Learned suppression against the real Redis: the aggregator keeps an incident's firing cells and
looks, a false-alarm verdict turns them into an entry at once, workers pick it up from Redis, the
aggregator counts what it suppressed; a real-spill verdict never creates one and removes one made
from the same incident; the area cap; and the ``spillwatch suppressions`` / ``ack`` / ``label`` CLI."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.aggregator import Aggregator
from processors.state_store import StateStore
from processors.suppression import FrameSuppressor, SuppressionCache, SuppressionRecorder, refresh
from spillwatch.events import Classification, SpillAlert, utcnow
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings
from spillwatch.suppression import Observation, cell_looks
from spillwatch.suppression_store import SuppressionStore
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

GRID = (10, 10)
STAIN_CELLS = (62, 63)


def scene(with_juice: bool = False) -> np.ndarray:
    """A 160 x 160 model input: grey floor, a dark textured stain on cells 62-63, optionally an
    orange liquid over it."""
    rng = np.random.default_rng(3)
    img = np.full((160, 160, 3), 200, np.uint8)
    img[96:112, 32:64] = rng.integers(70, 110, (16, 32, 3))
    if with_juice:
        img[96:112, 32:64] = (230, 140, 40)
    return img


def qmap(hot: dict[int, float]) -> list[list[int]]:
    flat = [int(round(255 * hot.get(i, 0.05))) for i in range(100)]
    return [flat[r * 10:(r + 1) * 10] for r in range(10)]


def frame(step: FrameSuppressor | None, seq: int, hot: dict[int, float], img: np.ndarray, camera: str = "cam-1") -> Classification:
    t0 = utcnow().replace(microsecond=0) - timedelta(minutes=30)
    c = Classification(camera_id=camera, seq=seq, capture_time=t0 + timedelta(seconds=seq / 2), spill_prob=max(hot.values(), default=0.05),
                       spill_map=qmap(hot), model_version="m1")
    if step is None:
        looks = cell_looks(img, sorted(hot), GRID)
        return c.model_copy(update={"looks": looks})
    return step.annotate(c, img)


class Sink:
    def __init__(self) -> None:
        self.alerts: list[SpillAlert] = []

    async def __call__(self, alert: SpillAlert) -> None:
        self.alerts.append(alert)


def settings_for(stack_settings: Settings, **supp: Any) -> Settings:
    return stack_settings.model_copy(update={
        "suppression": stack_settings.suppression.model_copy(update=supp),
        "aggregator": stack_settings.aggregator.model_copy(update={"clear_n": 3, "cooldown_s": 1}),
    })


@pytest.mark.timeout(60)
def test_a_false_alarm_verdict_becomes_a_suppression_workers_apply_at_once(stack_settings: Settings, redis_client: Any, tmp_path: Path) -> None:
    import redis.asyncio as aioredis

    s = settings_for(stack_settings)
    keys = RedisKeys(s.redis.key_prefix)
    store = SuppressionStore(redis_client, s.redis.key_prefix, s.suppression)
    hot = {62: 0.95, 63: 0.9}

    async def main() -> None:
        r = aioredis.from_url(s.redis.url)
        sink = Sink()
        agg = Aggregator(s, StateStore(r, s.redis.key_prefix, 3600), sink, model_threshold=0.85, map_threshold=0.5,
                         evidence_dir=tmp_path, suppression=SuppressionRecorder(r, s.redis.key_prefix, s.suppression))
        cache = SuppressionCache()
        step = FrameSuppressor(cache, margin=s.suppression.margin, map_threshold=0.5)
        try:
            for seq in range(8):  # the look-alike: pages once
                await agg.handle(frame(step, seq, hot, scene()))
            confirmed = [a for a in sink.alerts if a.state.value == "confirmed"]
            assert len(confirmed) == 1
            inc = confirmed[0].incident_id
            kept = store.observations(inc)
            assert len(kept) == 8 and all(isinstance(o, Observation) for o in kept)  # from the first suspicious frame on
            assert await r.ttl(keys.supp_learn(inc)) > s.suppression.learn_ttl_s - 60  # an open incident: kept for a verdict

            assert await refresh(cache, r, keys) is False or len(cache) == 0  # nothing learned yet
            outcome = store.apply_verdict(inc, False, by="rita", source="console")
            assert outcome.status == "created" and outcome.cells == 2 and outcome.entry_id
            assert store.outcome(inc) == outcome
            assert await refresh(cache, r, keys) is True and len(cache) == 1  # the version moved: re-read
            assert await refresh(cache, r, keys) is False  # nothing changed: one GET, no re-read

            for seq in range(8, 30):  # the same look-alike: suppressed, the open incident clears, no new page
                c = frame(step, seq, hot, scene())
                assert c.suppressed and c.suppressed[0].entry == outcome.entry_id and c.suppressed[0].cells == [62, 63]
                await agg.handle(c)
            assert [a.state.value for a in sink.alerts] == ["confirmed", "cleared"]
            listed = store.listing("cam-1")
            assert [(i.entry.id, i.fired, i.expired) for i in listed] == [(outcome.entry_id, 22, False)]
            assert listed[0].last_fired is not None and listed[0].entry.by == "rita" and listed[0].entry.incident_id == inc

            for seq in range(30, 36):  # a different-looking liquid on the same spot: counts, pages
                c = frame(step, seq, hot, scene(with_juice=True))
                assert c.suppressed is None and [lk[0] for lk in c.looks or []] == [62, 63]
                await agg.handle(c)
            juice = [a for a in sink.alerts if a.state.value == "confirmed"]
            assert len(juice) == 2 and juice[1].evidence.confirming_seq == 32  # the third frame: no delay

            # a real spill never creates a suppression...
            spill = store.apply_verdict(juice[1].incident_id, True, by="rita", source="console")
            assert spill.status == "not_suppressed" and len(store.entries()) == 1
            assert store.learn(juice[1].incident_id, by="rita").status == "not_suppressed"  # nor on request
            # ...and a changed mind about the false alarm removes the entry learned from it
            version = int(redis_client.get(keys.supp_version))
            back = store.apply_verdict(inc, True, by="sam", source="ack")
            assert back.status == "removed" and back.removed == [outcome.entry_id] and store.entries() == []
            assert int(redis_client.get(keys.supp_version)) == version + 1
            assert await refresh(cache, r, keys) is True and len(cache) == 0
        finally:
            await r.aclose()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_area_cap_refuses_a_whole_camera_unless_forced_and_entries_expire(stack_settings: Settings, redis_client: Any) -> None:
    s = settings_for(stack_settings, ttl_days=1.0)
    store = SuppressionStore(redis_client, s.redis.key_prefix, s.suppression)
    keys = RedisKeys(s.redis.key_prefix)
    now = utcnow()
    img = np.random.default_rng(0).integers(90, 110, (160, 160, 3)).astype(np.uint8)  # a uniform texture everywhere
    everywhere = {i: 0.9 for i in range(40)}
    for seq in range(3):
        o = Observation(camera_id="cam-9", seq=seq, capture_time=now, grid=GRID, model_version="m1",
                        looks=cell_looks(img, sorted(everywhere), GRID))
        redis_client.rpush(keys.supp_learn("inc-wide"), o.model_dump_json())
    refused = store.apply_verdict("inc-wide", False, by="rita", source="console")
    assert refused.status == "refused" and refused.area == pytest.approx(0.4) and store.entries() == []
    assert "--force" in refused.message
    forced = store.learn("inc-wide", by="admin", source="console", force=True)
    assert forced.status == "created" and store.get(forced.entry_id).forced  # type: ignore[union-attr, arg-type]
    assert store.apply_verdict("inc-none", False, by="rita").status == "nothing_to_learn"
    later = now + timedelta(days=2)
    assert [i.expired for i in store.listing(now=later)] == [True]
    assert store.listing(now=later, include_expired=False) == []
    assert store.purge_expired(now=later + timedelta(days=8)) == 1 and store.entries() == []
    off = SuppressionStore(redis_client, s.redis.key_prefix, s.suppression.model_copy(update={"enabled": False}))
    assert off.apply_verdict("inc-wide", False, by="rita").status == "disabled"


@pytest.mark.timeout(120)
def test_cli_list_remove_add_and_the_ack_and_label_verdicts(stack_settings: Settings, redis_client: Any, tmp_path: Path) -> None:
    s = stack_settings
    keys = RedisKeys(s.redis.key_prefix)
    now = utcnow()
    for inc in ("inc-a", "inc-b"):
        for seq in range(3):
            o = Observation(camera_id="dock-1", seq=seq, capture_time=now, grid=GRID, model_version="m1",
                            looks=[[62 if inc == "inc-a" else 10, 120, 128, 130, 60, 20, 40]])
            redis_client.rpush(keys.supp_learn(inc), o.model_dump_json())

    r = run_cli(s, ["ack", "inc-a", "--force", "--by", "jo", "--false"], tmp_path)
    assert r.returncode == 0 and "suppression: created: suppressed 1 map cell(s) of dock-1" in r.stdout, r.stdout + r.stderr
    r = run_cli(s, ["label", "inc-b", "--false", "--archive", str(tmp_path / "archive"), "--by", "kim", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["label"] == "clean" and out["suppression"]["status"] == "created"
    r = run_cli(s, ["suppressions", "list", "--json"], tmp_path)
    listed = json.loads(r.stdout)
    assert [(x["camera_id"], x["incident_id"], x["by"], x["source"], x["cells"], x["fired"]) for x in listed] == [
        ("dock-1", "inc-a", "jo", "ack", [62], 0), ("dock-1", "inc-b", "kim", "cli", [10], 0)]
    text = run_cli(s, ["suppressions", "list", "--camera", "dock-1"], tmp_path).stdout
    assert text.startswith("2 suppression(s)") and "from inc-a by jo (ack)" in text and "fired 0 frame(s)" in text

    r = run_cli(s, ["suppressions", "remove", listed[0]["id"]], tmp_path)
    assert r.returncode == 0 and f"removed {listed[0]['id']} of dock-1 (learned from inc-a)" in r.stdout
    r = run_cli(s, ["suppressions", "remove", listed[0]["id"]], tmp_path)
    assert r.returncode == 1 and "unknown suppression" in r.stderr
    r = run_cli(s, ["suppressions", "add", "inc-a", "--by", "jo"], tmp_path)  # learn again on request
    assert r.returncode == 0 and "created" in r.stdout
    r = run_cli(s, ["ack", "inc-b", "--force", "--by", "jo", "--true"], tmp_path)  # changed mind: a real spill
    assert r.returncode == 0 and "suppression: removed" in r.stdout
    r = run_cli(s, ["suppressions", "add", "inc-b"], tmp_path)
    assert r.returncode == 1 and "not_suppressed" in r.stdout
    assert [x["incident_id"] for x in json.loads(run_cli(s, ["suppressions", "list", "--json"], tmp_path).stdout)] == ["inc-a"]
