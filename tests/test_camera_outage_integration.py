"""Camera outage paging end to end, with the real broker, Redis, processes and alerting: two cameras
each served by its own ``spillwatch produce`` process, the ``spillwatch aggregator`` (which hosts
the camera monitor) and the alerting service paging a local webhook receiver.

One camera's producer is killed (SIGKILL: no goodbye, just silence): exactly one camera page on
the camera channels after the grace period; the monitor is killed and restarted during the
outage (no second page); the producer comes back: exactly one recovery notice. The other camera
stays healthy throughout and pages nothing."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from alerting.receiver import WebhookReceiver
from processors.camera_outage import OutageState
from spillwatch.events import CameraAlert, CameraHealth, CameraState, DeadLetter
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import REPO_ROOT, CameraConfig, Settings
from spillwatch.supervisor import ServiceGroup
from tests.helpers import make_video, read_to_end, wait_until
from tests.helpers.alerts import SECRET, configure, publish, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GRACE_S, RECOVERY_S = 4.0, 3.0


def settings_for(stack_settings: Settings, tmp: Path, hook_url: str) -> Settings:
    video = make_video(tmp / "loop.mp4", n_frames=20, fps=10)
    s = configure(stack_settings, channels=["console"], camera_channels=["webhook"], webhook_url=hook_url,
                  webhook_secret=SECRET)
    return s.model_copy(update={
        "log_format": "json",
        "cameras": [CameraConfig(id="cam-live", source=str(video), fps=2, loop=True),
                    CameraConfig(id="cam-stop", source=str(video), fps=2, loop=True, outage_grace_s=GRACE_S)],
        "producer": s.producer.model_copy(update={"heartbeat_s": 0.5, "stall_after_s": 1.0, "offline_after_s": 2.0}),
        # cam-live keeps the default grace (60 s): it must page nothing however the test goes
        "outages": s.outages.model_copy(update={"recovery_s": RECOVERY_S, "tick_interval_s": 0.5}),
        "aggregator": s.aggregator.model_copy(update={"threshold": 0.5}),
    })


@pytest.mark.timeout(180)
def test_a_producer_that_stops_pages_once_after_the_grace_period_and_once_when_it_is_back(
    stack_settings: Settings, tmp_path: Path, redis_client: object,
) -> None:
    keys = RedisKeys(stack_settings.redis.key_prefix)

    def monitor_state(cam: str) -> OutageState | None:
        raw = redis_client.get(keys.outage_state(cam))  # type: ignore[attr-defined]
        return OutageState.from_json(raw) if raw else None

    with WebhookReceiver(secret=SECRET) as recv:
        s = settings_for(stack_settings, tmp_path, recv.url)
        group_id = f"{s.kafka.topic_prefix}spillwatch-aggregator"
        with ServiceGroup(s, tmp_path / "logs", cwd=REPO_ROOT) as group, running(s) as alerting:
            group.start("aggregator")
            live = group.start(["produce", "--camera", "cam-live"], name="produce-live")
            stop = group.start(["produce", "--camera", "cam-stop"], name="produce-stop")
            group.wait_groups({group_id: 1}, timeout_s=60)
            # both cameras watched and healthy (the monitor read their heartbeats)
            wait_until(lambda: all((st := monitor_state(c)) and st.reported == "online" and st.good_since
                                   for c in ("cam-live", "cam-stop")), 30)
            # hostile heartbeats: a camera nobody configured, garbage. Dead-lettered, never counted
            ghost = CameraHealth(camera_id="ghost", state=CameraState.ONLINE).to_bytes()
            publish(s, ghost, b"\x00garbage", key=b"ghost", topic=s.topics.camera_health)

            stop.signal(signal.SIGKILL)
            killed = time.monotonic()
            stop.wait(10)
            wait_until(lambda: recv.pages, GRACE_S + 20)
            paged_after_s = time.monotonic() - killed
            page = recv.pages[0]["payload"]
            assert page["event"] == "camera.offline" and page["camera_id"] == "cam-stop", page
            assert "no heartbeat since" in page["alert"]["reason"]
            assert paged_after_s >= GRACE_S - 1.0, paged_after_s  # not before the grace period (less a heartbeat)
            print(f"camera page {paged_after_s:.1f} s after its producer was killed (grace {GRACE_S:.0f} s)")

            # the monitor dies during the outage and comes back: it remembers the outage (Redis)
            aggregator = group.children[0]
            aggregator.signal(signal.SIGKILL)
            aggregator.wait(10)
            group.start("aggregator", name="aggregator-2")
            group.wait_groups({group_id: 1}, timeout_s=60)
            state = monitor_state("cam-stop")
            assert state is not None and state.outage is not None and state.outage.incident_id == page["incident_id"]

            group.start(["produce", "--camera", "cam-stop"], name="produce-stop-2")
            back = time.monotonic()
            wait_until(lambda: len(recv.pages) >= 2, RECOVERY_S + 40)
            print(f"recovery notice {time.monotonic() - back:.1f} s after the producer was restarted (recovery {RECOVERY_S:.0f} s)")
            recovered = recv.pages[1]["payload"]
            assert recovered["event"] == "camera.recovered" and recovered["incident_id"] == page["incident_id"]
            # the healthy camera was watched the whole time (its state moved past the recovery) and never paged
            rec_at = CameraAlert.model_validate(recovered["alert"]).event_time
            wait_until(lambda: (st := monitor_state("cam-live")) and st.last_seen and st.last_seen > rec_at, 10)
            live_state = monitor_state("cam-live")
            assert live_state is not None and live_state.outage is None and live_state.bad_since is None
            assert live.running()
            wait_until(lambda: alerting.store.r.zcard(alerting.store.queue_key) == 0, 10)
            pages = alerting.pages()
        assert [p["idempotency_key"] for p in recv.snapshot()] == [f"{page['incident_id']}:offline",
                                                                   f"{page['incident_id']}:recovered"]
        assert [(p["camera_id"], p["state"], p["channel"]) for p in pages] == [
            ("cam-stop", "offline", "webhook"), ("cam-stop", "recovered", "webhook")]  # camera_channels only
    alerts = [CameraAlert.from_bytes(r.value) for r in read_to_end(s, s.topics.camera_alerts)]
    assert [(a.camera_id, a.state.value) for a in alerts] == [("cam-stop", "offline"), ("cam-stop", "recovered")]
    dead = [DeadLetter.from_bytes(r.value) for r in read_to_end(s, s.topics.dead_letter(s.topics.camera_health))]
    assert [d.payload() for d in dead] == [ghost, b"\x00garbage"] and "unknown camera" in dead[0].reason
    assert redis_client.get(keys.outage_state("ghost")) is None  # type: ignore[attr-defined]
