"""Unit tests of the pure incident state machine (processors.confirmation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from processors.confirmation import (
    CameraState,
    ConfirmParams,
    Phase,
    acknowledge,
    effective_score,
    incident_id,
    observe,
    params_for,
    tick,
    zone_mask,
)
from spillwatch.events import Classification, Region, SpillAlert
from spillwatch.settings import Settings

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
FPS = 2.0
THR = 0.6
P = ConfirmParams(threshold=THR, window=5, confirm_k=3, clear_ratio=0.5, clear_n=4, cooldown_s=10, escalate_after_s=30)


def cls(seq: int, prob: float, *, cam: str = "cam-1", t: datetime | None = None, smap=None, region=None) -> Classification:
    return Classification(
        camera_id=cam,
        seq=seq,
        capture_time=t if t is not None else T0 + timedelta(seconds=seq / FPS),
        spill_prob=prob,
        spill_map=smap,
        region=region,
        model_version="m1",
    )


def run(probs: list[float], params: ConfirmParams = P, state: CameraState | None = None, start: int = 0):
    """Feed probabilities as consecutive frames; returns (state, alerts, phases)."""
    st = state or CameraState(camera_id="cam-1")
    alerts: list[SpillAlert] = []
    phases: list[Phase] = []
    for i, p in enumerate(probs):
        c = cls(start + i, p)
        r = observe(st, c, params, now=c.capture_time + timedelta(milliseconds=50))
        st = r.state
        alerts += r.alerts
        phases.append(st.phase)
    return st, alerts, phases


def kinds(alerts: list[SpillAlert]) -> list[str]:
    return [a.state.value for a in alerts]


# --------------------------------------------------------------------------- confirmation


def test_clean_sequence_never_pages() -> None:
    st, alerts, phases = run([0.1, 0.2, 0.05, 0.59, 0.3] * 10)
    assert alerts == []
    assert set(phases) == {Phase.IDLE}


def test_single_spike_does_not_page_but_is_suspected() -> None:
    st, alerts, phases = run([0.1, 0.1, 0.99, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert alerts == []
    assert phases[2] == Phase.SUSPECTED
    # the spike leaves the 5-frame window -> idle again
    assert phases[7] == Phase.IDLE and st.suspect_seq is None


def test_two_spikes_in_window_do_not_page() -> None:
    _, alerts, _ = run([0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.9, 0.1])
    assert alerts == []


def test_three_consecutive_confirm_on_third_frame() -> None:
    st, alerts, phases = run([0.1, 0.1, 0.8, 0.9, 0.7, 0.9, 0.9])
    assert kinds(alerts) == ["confirmed"]
    assert phases[:5] == [Phase.IDLE, Phase.IDLE, Phase.SUSPECTED, Phase.SUSPECTED, Phase.CONFIRMED]
    a = alerts[0]
    assert a.evidence.confirming_seq == 4
    assert a.first_seen == T0 + timedelta(seconds=1.0)  # seq 2 at 2 fps
    assert a.confirmed_at == T0 + timedelta(seconds=2.0)
    assert (a.confirmed_at - a.first_seen).total_seconds() == pytest.approx(1.0)
    assert a.evidence.peak_prob == pytest.approx(0.9)
    assert a.evidence.frame_seqs == [0, 1, 2, 3, 4]
    assert a.incident_id == incident_id("cam-1", 2, a.first_seen)
    assert st.incident is not None and st.incident.id == a.incident_id


def test_k_of_n_with_misses_confirms_within_window() -> None:
    # hits at 0, 2, 4 -> 3 of 5 at seq 4
    _, alerts, _ = run([0.9, 0.1, 0.9, 0.1, 0.9])
    assert kinds(alerts) == ["confirmed"]
    assert alerts[0].evidence.confirming_seq == 4
    assert alerts[0].first_seen == T0  # first suspicious frame, not the confirming one


def test_threshold_is_inclusive() -> None:
    _, alerts, _ = run([THR, THR, THR])
    assert kinds(alerts) == ["confirmed"]


def test_confirmed_is_emitted_once_while_spill_persists() -> None:
    _, alerts, _ = run([0.9] * 60)
    assert kinds(alerts) == ["confirmed"]


def test_k1_pages_on_first_hit() -> None:
    p = P.model_copy(update={"window": 1, "confirm_k": 1})
    _, alerts, phases = run([0.1, 0.7], params=p)
    assert kinds(alerts) == ["confirmed"] and phases == [Phase.IDLE, Phase.CONFIRMED]


def test_confirm_k_greater_than_window_rejected() -> None:
    with pytest.raises(ValueError):
        ConfirmParams(threshold=0.5, window=3, confirm_k=4)


def test_region_and_model_version_come_from_confirming_frame() -> None:
    st = CameraState(camera_id="cam-1")
    reg = Region(x0=0.1, y0=0.5, x1=0.4, y1=0.9, area=0.1)
    for i in range(3):
        r = observe(st, cls(i, 0.9, region=reg if i == 2 else None), P, now=T0)
        st = r.state
    assert r.alerts[0].evidence.region == reg
    assert r.alerts[0].model_version == "m1"


# --------------------------------------------------------------------------- hysteresis / clearing


def test_clear_needs_clear_n_consecutive_low_frames_and_emits_once() -> None:
    # confirm, then 3 low (not enough, clear_n=4), one in the hysteresis band resets, then 4 low
    probs = [0.9, 0.9, 0.9] + [0.1, 0.1, 0.1] + [0.45] + [0.1, 0.1, 0.1] + [0.1] + [0.1] * 10
    st, alerts, phases = run(probs)
    assert kinds(alerts) == ["confirmed", "cleared"]
    clear_idx = phases.index(Phase.CLEARED)
    assert clear_idx == 10  # 3 confirm + 3 low + band + 4 low -> the 4th consecutive low frame
    cleared = alerts[1]
    assert cleared.incident_id == alerts[0].incident_id
    assert cleared.cleared_at == T0 + timedelta(seconds=10 / FPS)
    assert st.incident is None and st.last_incident_id == alerts[0].incident_id


def test_band_between_half_threshold_and_threshold_holds_incident() -> None:
    # 0.35 is below threshold (0.6) but above threshold*ratio (0.3): never clears
    _, alerts, phases = run([0.9, 0.9, 0.9] + [0.35] * 40)
    assert kinds(alerts) == ["confirmed"]
    assert phases[-1] == Phase.CONFIRMED


def test_occlusion_shorter_than_clear_n_does_not_clear_or_repage() -> None:
    _, alerts, _ = run([0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.9])
    assert kinds(alerts) == ["confirmed"]


# --------------------------------------------------------------------------- cooldown


def test_cooldown_blocks_new_incident_then_allows_it() -> None:
    # clear at seq 6 (t=3 s), cooldown 10 s -> nothing may open before t=13 s (seq 26)
    probs = [0.9] * 3 + [0.1] * 4 + [0.9] * 30
    st, alerts, phases = run(probs)
    assert kinds(alerts) == ["confirmed", "cleared", "confirmed"]
    second = alerts[2]
    assert second.incident_id != alerts[0].incident_id
    assert second.confirmed_at >= alerts[1].cleared_at + timedelta(seconds=P.cooldown_s)
    # confirmation happens on the first frame after the cooldown (window already holds k hits)
    assert second.confirmed_at == T0 + timedelta(seconds=26 / FPS)
    assert phases[7:26] == [Phase.CLEARED] * 19


def test_no_spill_after_cooldown_returns_to_idle() -> None:
    st, alerts, phases = run([0.9] * 3 + [0.1] * 4 + [0.1] * 40)
    assert kinds(alerts) == ["confirmed", "cleared"]
    assert phases[-1] == Phase.IDLE and st.cooldown_until is None


# --------------------------------------------------------------------------- redelivery / order


def test_redelivered_classifications_are_ignored() -> None:
    st = CameraState(camera_id="cam-1")
    alerts: list[SpillAlert] = []
    seqs = [0, 1, 2, 1, 2, 0, 1, 2, 3, 2, 3]
    dups = 0
    for s in seqs:
        r = observe(st, cls(s, 0.9), P, now=T0)
        st, dups = r.state, dups + int(r.duplicate)
        alerts += r.alerts
    assert kinds(alerts) == ["confirmed"]
    assert dups == 7 and st.duplicates == 7 and st.frames == 4
    assert [s.seq for s in st.window] == [0, 1, 2, 3]


def test_replaying_whole_stream_on_saved_state_emits_nothing() -> None:
    probs = [0.1, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]
    st, alerts, _ = run(probs)
    assert kinds(alerts) == ["confirmed", "cleared"]
    st2, alerts2, _ = run(probs, state=st)  # same seqs and capture times again
    assert alerts2 == [] and st2.duplicates == len(probs)


def test_duplicate_does_not_mutate_input_state() -> None:
    st, _, _ = run([0.9, 0.9])
    before = st.model_dump()
    observe(st, cls(5, 0.9), P, now=T0)
    assert st.model_dump() == before


def test_no_step_changes_the_state_it_was_given() -> None:
    """observe, tick and acknowledge return a new state and leave theirs as it was, in every phase and
    on every path that changes the state in place (the window, the epochs' marks, the incident's
    peak, escalation, acknowledgement, clearing): the store retries a batch on the states it read, so a
    step that changed its input would decide the retry on a state that was never committed."""
    probs = [0.1, 0.9, 0.2, 0.9, 0.95, 0.99] + [0.9] * 60 + [0.1] * 4 + [0.9] * 3
    st = CameraState(camera_id="cam-1")
    steps = 0
    alerts: list[SpillAlert] = []
    for i, p in enumerate(probs):
        epoch = 1 if i < 40 else 2  # a producer restart: a second epoch's mark
        c = cls(i if i < 40 else i - 40, p).model_copy(update={"epoch": epoch, "capture_time": T0 + timedelta(seconds=i / FPS)})
        before = st.model_dump()
        r = observe(st, c, P, now=c.capture_time + timedelta(milliseconds=50))
        assert st.model_dump() == before, f"observe changed its input at frame {i}"
        if st.incident is not None:
            t = tick(st, P, st.incident.confirmed_wall + timedelta(seconds=60), acknowledged=i % 2 == 0)
            assert t.state.incident is not None and (t.state.incident.escalated or t.state.incident.acknowledged)
            a = acknowledge(st, st.incident.id)
            assert a.incident is not None and a.incident.acknowledged
            assert st.model_dump() == before, f"tick or acknowledge changed its input at frame {i}"
            steps += 1
        st, alerts = r.state, alerts + r.alerts
    assert st.frames == len(probs) and len(st.streams) == 2
    assert kinds(alerts) == ["confirmed", "escalated", "cleared"]  # every path that changes the incident in place
    assert steps > 60


def test_incident_id_is_stable_across_recomputation() -> None:
    _, a1, _ = run([0.1, 0.9, 0.9, 0.9])
    _, a2, _ = run([0.1, 0.9, 0.9, 0.9])
    assert a1[0].incident_id == a2[0].incident_id
    _, a3, _ = run([0.1, 0.1, 0.9, 0.9, 0.9])
    assert a3[0].incident_id != a1[0].incident_id


def test_stale_out_of_order_frame_is_dropped() -> None:
    st = CameraState(camera_id="cam-1")
    st = observe(st, cls(5, 0.1), P, now=T0).state
    r = observe(st, cls(4, 0.9), P, now=T0)  # older capture, lower seq: arrived late
    assert r.duplicate and r.state.window[-1].seq == 5


def test_producer_sequence_restart_is_accepted_and_gets_new_incident_id() -> None:
    st, alerts, _ = run([0.9, 0.9, 0.9])
    # producer restarts: seq goes back to 0 but capture time moves on
    later = T0 + timedelta(seconds=3)
    st = observe(st, cls(0, 0.1, t=later), P, now=later).state
    assert st.last_seq == 0 and st.last_capture == later and st.frames == 4
    assert [s.seq for s in st.window] == [0]  # old votes do not mix with the new sequence


def test_capture_gap_empties_window() -> None:
    st, alerts, _ = run([0.9, 0.9])
    far = T0 + timedelta(seconds=1 + P.max_gap_s + 5)
    r = observe(st, cls(2, 0.9, t=far), P, now=far)
    assert r.alerts == [] and len(r.state.window) == 1


def test_wrong_camera_is_an_error() -> None:
    with pytest.raises(ValueError):
        observe(CameraState(camera_id="cam-1"), cls(0, 0.9, cam="cam-2"), P, now=T0)


# --------------------------------------------------------------------------- escalation


def test_escalation_once_after_delay_on_frames() -> None:
    # escalate_after 30 s = 60 frames after confirmation
    _, alerts, _ = run([0.9] * 100)
    assert kinds(alerts) == ["confirmed", "escalated"]
    esc = alerts[1]
    assert esc.incident_id == alerts[0].incident_id
    # confirmed at seq 2 (t=1 s); the first frame at or after t=31 s is seq 62
    assert esc.event_time == T0 + timedelta(seconds=31, milliseconds=50)


def test_acknowledged_incident_never_escalates() -> None:
    st, alerts, _ = run([0.9] * 3)
    st = acknowledge(st, alerts[0].incident_id)
    st, alerts2, _ = run([0.9] * 100, state=st, start=3)
    assert alerts2 == []
    assert tick(st, P, T0 + timedelta(hours=1)).alerts == []


def test_acknowledge_other_id_is_ignored() -> None:
    st, _, _ = run([0.9] * 3)
    st2 = acknowledge(st, "something-else")
    assert st2.incident is not None and not st2.incident.acknowledged


def test_timer_escalates_silent_camera_once() -> None:
    st, alerts, _ = run([0.9] * 3)
    confirmed_wall = st.incident.confirmed_wall
    assert tick(st, P, confirmed_wall + timedelta(seconds=29)).alerts == []
    r = tick(st, P, confirmed_wall + timedelta(seconds=30))
    assert kinds(r.alerts) == ["escalated"]
    assert tick(r.state, P, confirmed_wall + timedelta(seconds=300)).alerts == []
    # and frames after the timer escalation do not escalate again
    _, more, _ = run([0.9] * 80, state=r.state, start=3)
    assert more == []


def test_tick_with_acknowledgement_blocks_escalation() -> None:
    st, _, _ = run([0.9] * 3)
    r = tick(st, P, st.incident.confirmed_wall + timedelta(seconds=60), acknowledged=True)
    assert r.alerts == [] and r.state.incident.acknowledged


def test_tick_without_incident_is_noop() -> None:
    st, _, _ = run([0.1] * 3)
    r = tick(st, P, T0 + timedelta(days=1))
    assert r.alerts == [] and r.state == st


def test_cleared_incident_does_not_escalate() -> None:
    st, alerts, _ = run([0.9] * 3 + [0.1] * 4)
    assert kinds(alerts) == ["confirmed", "cleared"]
    assert tick(st, P, T0 + timedelta(hours=1)).alerts == []


# --------------------------------------------------------------------------- zones

SQUARE_BOTTOM_LEFT = ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0))


def qmap(cells: dict[tuple[int, int], float], g: int = 8) -> list[list[int]]:
    m = np.zeros((g, g))
    for (r, c), v in cells.items():
        m[r, c] = v
    return np.rint(m * 255).astype(int).tolist()


def test_zone_mask_rasterises_polygon() -> None:
    m = zone_mask(SQUARE_BOTTOM_LEFT, 8, 8)
    expect = np.zeros((8, 8), bool)
    expect[4:, :4] = True
    assert (m == expect).all()
    tri = zone_mask(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)), 4, 4)
    assert tri[0, 0] and not tri[3, 3] and tri[0, 3] and tri[3, 0]
    assert tri.sum() < 16


def test_zone_mask_of_tiny_zone_touches_a_cell() -> None:
    m = zone_mask(((0.30, 0.30), (0.36, 0.30), (0.36, 0.36), (0.30, 0.36)), 4, 4)
    assert m.sum() >= 1 and m[1, 1]


def test_effective_score_without_zone_or_map_is_prob() -> None:
    assert effective_score(0.8, None, None, 0.5) == pytest.approx(0.8)
    assert effective_score(0.8, qmap({}), None, 0.5) == pytest.approx(0.8)
    assert effective_score(0.8, None, SQUARE_BOTTOM_LEFT, 0.5) == pytest.approx(0.8)  # fail-open


def test_effective_score_inside_zone_keeps_prob() -> None:
    smap = qmap({(6, 1): 0.9})
    assert effective_score(0.8, smap, SQUARE_BOTTOM_LEFT, 0.5) == pytest.approx(0.8)


def test_effective_score_outside_zone_is_gated_by_zone_cells() -> None:
    smap = qmap({(1, 6): 0.95, (6, 1): 0.2})
    assert effective_score(0.9, smap, SQUARE_BOTTOM_LEFT, 0.5) == pytest.approx(0.2, abs=0.01)


def test_spill_outside_zone_never_pages_inside_does() -> None:
    p = P.model_copy(update={"zone": SQUARE_BOTTOM_LEFT, "zone_name": "cam-1-zone"})
    st = CameraState(camera_id="cam-1")
    alerts = []
    for i in range(10):  # spill top-right: outside the zone
        r = observe(st, cls(i, 0.95, smap=qmap({(1, 6): 0.95, (2, 6): 0.9})), p, now=T0)
        st, alerts = r.state, alerts + r.alerts
    assert alerts == []
    for i in range(10, 13):  # spill moves into the zone
        r = observe(st, cls(i, 0.95, smap=qmap({(6, 2): 0.9})), p, now=T0)
        st, alerts = r.state, alerts + r.alerts
    assert kinds(alerts) == ["confirmed"]
    assert alerts[0].zone == "cam-1-zone"
    assert alerts[0].first_seen == T0 + timedelta(seconds=10 / FPS)


# --------------------------------------------------------------------------- state / params


def test_state_round_trips_through_json() -> None:
    st, _, _ = run([0.1, 0.9, 0.9, 0.9, 0.5])
    again = CameraState.from_json(st.to_json())
    assert again == st
    assert again.phase == Phase.CONFIRMED and again.incident is not None


def test_params_for_uses_camera_overrides() -> None:
    s = Settings(
        cameras=[
            {"id": "a", "source": "x.mp4", "threshold": 0.8, "window": 7, "confirm_k": 4, "zone": list(SQUARE_BOTTOM_LEFT)},
            {"id": "b", "source": "y.mp4"},
        ],
        aggregator={"window": 5, "confirm_k": 3, "clear_n": 6},
    )
    pa = params_for(s, "a", model_threshold=0.5, map_threshold=0.4)
    assert (pa.threshold, pa.window, pa.confirm_k, pa.clear_n, pa.map_threshold) == (0.8, 7, 4, 6, 0.4)
    assert pa.zone == SQUARE_BOTTOM_LEFT and pa.zone_name == "a-zone"
    pb = params_for(s, "b", model_threshold=0.5)
    assert (pb.threshold, pb.window, pb.confirm_k, pb.zone) == (0.5, 5, 3, None)
    unknown = params_for(s, "zzz", model_threshold=0.55)
    assert unknown.threshold == 0.55


def test_params_for_global_threshold_override() -> None:
    s = Settings(cameras=[{"id": "a", "source": "x", "window": 2, "confirm_k": 2}], aggregator={"threshold": 0.7})
    pa = params_for(s, "a", model_threshold=0.5)
    assert pa.threshold == 0.7 and pa.window == 2 and pa.confirm_k == 2


def test_a_camera_window_smaller_than_confirm_k_is_a_config_error_not_clamped() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"camera a: confirm_k 3 \(aggregator.confirm_k\) > window 2"):
        Settings(cameras=[{"id": "a", "source": "x", "window": 2}])
