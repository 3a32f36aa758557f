"""The camera-outage state machine (processors/camera_outage.py): pure, the clock a parameter.

Each scenario is a timeline of heartbeats (what ``camera-health`` carries) and timer ticks; the
expected result is the list of CameraAlert events (state, seconds after T0), i.e. the pages.
Defaults: grace 60 s, recovery 30 s, silence 15 s, heartbeats every 5 s, a tick every 2 s."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from processors.camera_outage import (
    MAX_FUTURE_S,
    HeartbeatError,
    OutageParams,
    OutageState,
    Step,
    heartbeat_from,
    incident_id,
    observe,
    params_for,
    retire,
    tick,
)
from processors.camera_outage import Heartbeat as HB
from spillwatch.events import CameraAlert, CameraAlertState, CameraHealth, CameraState
from spillwatch.settings import Settings

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
CAM = "dock-1"
P = OutageParams(grace_s=60, recovery_s=30, silence_s=15)
ON, STALLED, OFF = CameraState.ONLINE, CameraState.STALLED, CameraState.OFFLINE


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@dataclass(frozen=True)
class Ev:
    t: float  # when the monitor sees it (wall clock of the monitor)
    kind: str  # "hb", "tick", "restart"
    state: CameraState | None = None
    stamp: float | None = None  # the heartbeat's own time when it differs from t (a backlog)
    error: str | None = None


def beats(start: float, end: float, state: CameraState, every: float = 5.0, error: str | None = None) -> list[Ev]:
    n = int(math.floor((end - start) / every)) + 1
    return [Ev(start + i * every, "hb", state, error=error) for i in range(n) if start + i * every < end]


def ticks(start: float, end: float, every: float = 2.0) -> list[Ev]:
    n = int(math.floor((end - start) / every)) + 1
    return [Ev(start + i * every + 0.5, "tick") for i in range(n) if start + i * every + 0.5 < end]


def run(events: list[Ev], params: OutageParams = P, floor: float = -3600.0,
        state: OutageState | None = None) -> tuple[list[tuple[str, float]], OutageState, list[CameraAlert]]:
    """Play the timeline; returns [(state, seconds after T0 of the event)], the final state, the alerts."""
    st = state or OutageState(camera_id=CAM)
    out: list[CameraAlert] = []
    fl = at(floor)
    order = {"restart": 0, "hb": 1, "tick": 2}
    for ev in sorted(events, key=lambda e: (e.t, order[e.kind])):
        if ev.kind == "restart":
            st = OutageState.from_json(st.to_json())  # what a new process loads from Redis
            fl = at(ev.t)
            continue
        if ev.kind == "hb":
            assert ev.state is not None
            step: Step = observe(st, HB(camera_id=CAM, state=ev.state, at=at(ev.t if ev.stamp is None else ev.stamp),
                                        error=ev.error), params)
        else:
            step = tick(st, params, at(ev.t), fl)
        st = step.state
        out += step.alerts
    return [(a.state.value, (a.event_time - T0).total_seconds()) for a in out], st, out


# --------------------------------------------------------------------------- the scenario table

SCENARIOS = {
    "healthy for 10 min: nothing": (
        beats(0, 600, ON) + ticks(0, 600),
        [],
    ),
    "short blip (stalled 40 s) then steady: nothing": (
        beats(0, 100, ON) + beats(100, 140, STALLED) + beats(140, 400, ON) + ticks(0, 400),
        [],
    ),
    "long outage (stalled 3 min): one page after the grace, one recovery notice": (
        beats(0, 100, ON) + beats(100, 280, STALLED) + beats(280, 500, ON) + ticks(0, 500),
        [("stalled", 160.0), ("recovered", 310.0)],
    ),
    "producer dies for 5 min (silence): paged by the timer, recovery on its heartbeats": (
        beats(0, 100, ON) + beats(400, 600, ON) + ticks(0, 600),
        [("offline", 156.5), ("recovered", 430.0)],
    ),
    "flapping every 5 s for 5 min: one page, one recovery once steady": (
        [Ev(t, "hb", ON if (t // 5) % 2 == 0 else OFF) for t in range(100, 400, 5)]
        + beats(0, 100, ON) + beats(400, 600, ON) + ticks(0, 600),
        [("offline", 165.0), ("recovered", 430.0)],
    ),
    "stalled -> offline -> online: one page (stalled), one recovery": (
        beats(0, 100, ON) + beats(100, 175, STALLED) + beats(175, 235, OFF, error="source failed") + beats(235, 400, ON)
        + ticks(0, 400),
        [("stalled", 160.0), ("recovered", 265.0)],
    ),
    "monitor restart mid-outage: no second page, one recovery": (
        beats(0, 100, ON) + ticks(0, 200) + [Ev(200, "restart")] + ticks(260, 600) + beats(400, 600, ON),
        [("offline", 156.5), ("recovered", 430.0)],
    ),
    "monitor down 10 min, camera healthy, backlog read after restart: nothing": (
        beats(0, 100, ON) + ticks(0, 100) + [Ev(700, "restart")]
        + [Ev(705 + i * 0.01, "hb", ON, stamp=s.t) for i, s in enumerate(beats(100, 700, ON))]
        + beats(710, 900, ON) + ticks(700, 900),
        [],
    ),
    "monitor lags 20 s behind (a presumed silence), then catches up: nothing": (
        beats(0, 100, ON) + ticks(0, 300)
        + [Ev(120 + i * 0.1, "hb", ON, stamp=s.t) for i, s in enumerate(beats(100, 120, ON))] + beats(120, 300, ON),
        [],
    ),
    "a presumed silence that did not happen does not count towards a later blip: nothing": (
        beats(0, 100, ON) + ticks(0, 300)
        + [Ev(118 + i * 0.1, "hb", ON, stamp=s.t) for i, s in enumerate(beats(100, 120, ON))]
        + beats(120, 130, ON) + beats(130, 170, STALLED) + beats(170, 300, ON),
        [],
    ),
    "a real gap found in a backlog (producer was down 2 min): paged late, then recovery": (
        beats(0, 100, ON) + [Ev(400, "restart")]
        + [Ev(400 + i * 0.01, "hb", ON, stamp=s.t) for i, s in enumerate(beats(220, 400, ON))]
        + beats(405, 500, ON) + ticks(400, 500),
        [("offline", 220.0), ("recovered", 250.0)],
    ),
    "a camera never heard from: paged grace_s after the monitor began watching": (
        ticks(0, 100),
        [("offline", 60.5)],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    events, expected = SCENARIOS[name]
    floor = 0.0 if "never heard" in name else -3600.0
    got, _, _ = run(events, floor=floor)
    assert got == expected


def test_one_incident_id_per_outage_and_its_recovery_names_it() -> None:
    _, st, alerts = run(beats(0, 100, ON) + beats(100, 280, STALLED) + beats(280, 500, ON) + ticks(0, 500))
    opened, recovered = alerts
    assert opened.incident_id == recovered.incident_id == incident_id(CAM, at(100)) == "outage-dock-1-20260301T080140.000Z"
    assert opened.since == at(100) and opened.opened_at == at(160) and opened.grace_s == 60
    assert recovered.recovered_at == at(280) and recovered.since == opened.since
    assert st.outage is None and st.bad_since is None


def test_two_outages_get_two_ids_and_two_pages() -> None:
    ev = beats(0, 100, ON) + beats(100, 200, OFF) + beats(200, 300, ON) + beats(300, 400, OFF) + beats(400, 500, ON)
    got, _, alerts = run(ev + ticks(0, 500))
    assert got == [("offline", 160.0), ("recovered", 230.0), ("offline", 360.0), ("recovered", 430.0)]
    assert alerts[0].incident_id != alerts[2].incident_id


def test_per_camera_grace_and_recovery_periods() -> None:
    fast = OutageParams(grace_s=5, recovery_s=0, silence_s=15)
    got, _, _ = run(beats(0, 100, ON) + beats(100, 140, STALLED) + beats(140, 200, ON) + ticks(0, 200), fast)
    assert got == [("stalled", 105.0), ("recovered", 140.0)]


def test_reasons_say_what_happened() -> None:
    _, _, alerts = run(beats(0, 100, ON) + beats(100, 180, OFF, error="rtsp timeout") + beats(180, 300, ON) + ticks(0, 300))
    assert alerts[0].reason == "offline: rtsp timeout"
    assert alerts[1].reason.startswith("frames flowing again since 2026-03-01 08:03:00Z")
    _, _, silent = run(beats(0, 100, ON) + ticks(0, 200))
    assert silent[0].reason.startswith("no heartbeat since 2026-03-01 08:01:35Z")
    _, _, ended = run(beats(0, 30, ON) + [Ev(30, "hb", OFF, error="source ended")] + ticks(0, 200))
    assert ended[0].reason.startswith("no heartbeat since") and "offline: source ended" in ended[0].reason


def test_a_redelivered_or_older_heartbeat_changes_nothing() -> None:
    st = observe(OutageState(camera_id=CAM), HB(camera_id=CAM, state=ON, at=at(10)), P).state
    again = observe(st, HB(camera_id=CAM, state=OFF, at=at(10)), P)
    older = observe(st, HB(camera_id=CAM, state=OFF, at=at(5)), P)
    assert again.duplicate and older.duplicate and again.state == st == older.state


def test_an_idle_tick_writes_nothing() -> None:
    st = observe(OutageState(camera_id=CAM), HB(camera_id=CAM, state=ON, at=at(10)), P).state
    assert tick(st, P, at(12), at(0)).duplicate
    silent = tick(st, P, at(40), at(0))  # presumes silence: a change to write
    assert not silent.duplicate and silent.state.bad_since == at(10) and silent.state.presumed
    assert tick(silent.state, P, at(42), at(0)).duplicate


def test_retire_closes_an_open_outage_once() -> None:
    _, st, _ = run(beats(0, 100, ON) + ticks(0, 200))
    assert st.outage is not None
    step = retire(st, at(300))
    assert [a.state for a in step.alerts] == [CameraAlertState.RECOVERED] and "no longer configured" in step.alerts[0].reason
    assert retire(step.state, at(301)).duplicate


def test_params_come_from_the_settings_and_the_camera_override() -> None:
    s = Settings(cameras=[{"id": "a", "source": "x.mp4", "outage_grace_s": 5}, {"id": "b", "source": "y.mp4"}],
                 producer={"heartbeat_s": 2}, outages={"grace_s": 90, "recovery_s": 10})
    assert params_for(s, "a") == OutageParams(grace_s=5, recovery_s=10, silence_s=6)
    assert params_for(s, "b").grace_s == 90
    s2 = s.model_copy(update={"outages": s.outages.model_copy(update={"silence_s": 20.0})})
    assert params_for(s2, "b").silence_s == 20


# --------------------------------------------------------------------------- hostile heartbeats


def _health(**kw: object) -> CameraHealth:
    base: dict[str, object] = {"camera_id": CAM, "state": "online", "fps": 2.0, "at": at(0)}
    return CameraHealth.model_validate(base | kw)


@pytest.mark.parametrize(("health", "key", "category"), [
    ({"camera_id": "ghost"}, b"ghost", "unknown_camera"),
    ({"camera_id": "../../etc"}, None, "malformed"),
    ({"camera_id": "x" * 300}, None, "malformed"),
    ({}, b"dock-2", "malformed"),
    ({"fps": float("nan")}, None, "malformed"),
    ({"fps": 1e9}, None, "malformed"),
    ({"frames_published": -1}, None, "malformed"),
    ({"at": datetime(1970, 1, 1, tzinfo=UTC)}, None, "malformed"),
    ({"last_frame_time": datetime(9999, 1, 1, tzinfo=UTC)}, None, "malformed"),
    ({"at": at(MAX_FUTURE_S + 60)}, None, "clock_skew"),
])
def test_hostile_heartbeats_are_refused_with_a_category(health: dict[str, object], key: bytes | None, category: str) -> None:
    with pytest.raises(HeartbeatError) as err:
        heartbeat_from(_health(**health), key, at(0), {CAM, "dock-2"})
    assert err.value.category == category


def test_a_heartbeat_counts_at_the_earlier_of_its_stamp_and_its_arrival_and_its_error_is_one_line() -> None:
    hb = heartbeat_from(_health(at=at(100), error="bad\r\nthing\x00" + "x" * 400), CAM.encode(), at(40), {CAM})
    assert hb.at == at(40)  # a producer clock a minute ahead cannot make a heartbeat fresher than now
    assert hb.error is not None and "\n" not in hb.error and "\x00" not in hb.error and len(hb.error) == 300
    assert heartbeat_from(_health(at=at(10)), None, at(40), {CAM}).at == at(10)


def test_a_replay_namespace_has_no_camera_monitor(tmp_path: object) -> None:
    from pathlib import Path

    from training.replay import ReplayOptions, replay_settings

    rs = replay_settings(Settings(), "r1", ["cam-r"], ReplayOptions(), Path(str(tmp_path)), 10)
    assert rs.cameras[0].id == "cam-r" and rs.outages.enabled is False  # no heartbeats in a replay: nothing to watch
