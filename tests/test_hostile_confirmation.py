"""Issue 9 item 2: a forged or clock-skewed frame cannot silence a camera (pure admission rule).

Properties (hypothesis) of ``processors.confirmation.admit``/``observe``, the rule stated in that
module's docstring: whatever records came before, a frame of a new producer epoch captured near the
clock is always taken; a forgery that copies a live epoch holds that epoch back only until the real
capture times pass the forged one (at most ``capture_ahead_s``); redelivered records are always
dropped; a real spill after one forged frame pages exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.confirmation import Admission, CameraState, ConfirmParams, Phase, admit, observe
from spillwatch.events import MAX_SEQ, Classification

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
AHEAD, STALE = 120.0, 600.0
P = ConfirmParams(threshold=0.6, window=5, confirm_k=3, clear_n=4, cooldown_s=10, capture_ahead_s=AHEAD, stale_after_s=STALE)
REAL_EPOCH = 1_764_000_000_000_123


def cls(seq: int, t: datetime, prob: float = 0.1, epoch: int | None = REAL_EPOCH) -> Classification:
    return Classification(camera_id="cam-1", seq=seq, epoch=epoch, capture_time=t, spill_prob=prob, model_version="m1")


# A hostile record: any epoch (None, a few fixed ones, the real one), any seq, any probability, a
# capture time anywhere from two hours back to the admission bound ahead, arriving `dt` after the
# previous record.
hostile_record = st.tuples(
    st.one_of(st.none(), st.sampled_from([0, 7, REAL_EPOCH, MAX_SEQ]), st.integers(0, MAX_SEQ)),
    st.integers(0, MAX_SEQ),
    st.floats(-7200.0, AHEAD, allow_nan=False),
    st.floats(0.0, 1.0),
    st.floats(0.0, 5.0),
)


def feed_hostile(records: list[tuple], start: datetime = T0) -> tuple[CameraState, datetime, dict]:
    """Feed hostile records (through observe, with the clock advancing); returns the state, the
    clock and the latest forged capture per epoch that was taken."""
    state, now = CameraState(camera_id="cam-1"), start
    forged: dict[int | None, datetime] = {}
    for epoch, seq, ahead, prob, dt in records:
        now = now + timedelta(seconds=dt)
        t = now + timedelta(seconds=ahead)
        r = observe(state, cls(seq, t, prob, epoch), P, now)
        if r.admission.taken:
            forged[epoch] = max(forged.get(epoch, t), t)
        state = r.state
    return state, now, forged


@settings(max_examples=150, deadline=None)
@given(st.lists(hostile_record, max_size=30), st.integers(1, 40), st.floats(0.0, STALE - AHEAD - 1))
def test_a_new_epoch_is_always_taken_whatever_came_before(records: list[tuple], n: int, lag: float) -> None:
    state, now, _ = feed_hostile(records)
    epoch = 99_999_999  # a producer that (re)starts now: an epoch nobody used
    for seq in range(n):
        now += timedelta(seconds=0.5)
        r = observe(state, cls(seq, now - timedelta(seconds=lag), epoch=epoch), P, now)
        assert r.admission.taken, (seq, r.admission)
        state = r.state


@settings(max_examples=150, deadline=None)
@given(st.lists(hostile_record, max_size=30), st.integers(1, 400))
def test_a_forgery_of_a_live_epoch_holds_it_back_at_most_until_its_capture_time(records: list[tuple], n: int) -> None:
    state, now, forged = feed_hostile(records)
    last_arrival = now  # the clock when the last hostile record arrived (summed as feed_hostile does)
    bound = forged.get(REAL_EPOCH)
    seq0 = 1_000
    for i in range(n):
        now += timedelta(seconds=0.5)
        r = observe(state, cls(seq0 + i, now), P, now)
        if bound is None or now > bound:
            assert r.admission.taken, (i, r.admission)
        state = r.state
    # ... and that bound is never more than capture_ahead_s after the forgery arrived
    if bound is not None:
        # (the bound is the clock itself, not T0 + the sum of the gaps as floats: timedelta rounds each
        # gap to a microsecond, so the float sum can be 1 us short of the clock)
        assert all(f <= last_arrival + timedelta(seconds=AHEAD) for f in forged.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    st.lists(st.integers(0, 39), max_size=60),
    st.sampled_from([None, REAL_EPOCH]),
)
def test_redelivered_records_are_always_dropped(probs: list[float], again: list[int], epoch: int | None) -> None:
    state, now = CameraState(camera_id="cam-1"), T0
    sent = []
    for seq, p in enumerate(probs):
        now += timedelta(seconds=0.5)
        c = cls(seq, now, p, epoch)
        sent.append(c)
        state = observe(state, c, P, now).state
    before = state.model_dump()
    for i in again:
        r = observe(state, sent[i % len(sent)], P, now + timedelta(seconds=1))
        assert r.duplicate and r.admission == Admission.DUPLICATE and r.alerts == []
    assert state.model_dump() == before


@settings(max_examples=150, deadline=None)
@given(hostile_record, st.booleans())
def test_a_real_spill_after_one_forged_frame_pages_once(forgery: tuple, same_epoch: bool) -> None:
    epoch, seq, ahead, prob, _ = forgery
    if same_epoch:
        epoch = REAL_EPOCH
    state, now = CameraState(camera_id="cam-1"), T0
    for i in range(6):  # the camera runs, no spill
        now += timedelta(seconds=0.5)
        state = observe(state, cls(i, now), P, now).state
    r = observe(state, cls(seq, now + timedelta(seconds=ahead), prob, epoch), P, now)
    state, alerts = r.state, list(r.alerts)
    # the spill appears and stays for 2 * capture_ahead_s + 10 s of frames at 2 fps
    for i in range(6, 6 + int((2 * AHEAD + 10) * 2)):
        now += timedelta(seconds=0.5)
        r = observe(state, cls(i, now, 0.95), P, now)
        state, alerts = r.state, alerts + r.alerts
    confirmed = [a for a in alerts if a.state.value == "confirmed"]
    assert len(confirmed) == 1 and state.phase == Phase.CONFIRMED


# --------------------------------------------------------------------------- the rules one by one


def test_issue_case_frame_from_2100_with_huge_seq_is_refused_and_spill_pages() -> None:
    state, now = CameraState(camera_id="cam-1"), T0
    r = observe(state, cls(MAX_SEQ, datetime(2100, 1, 1, tzinfo=UTC), 0.99, epoch=None), P, now)
    assert r.admission == Admission.FUTURE and r.duplicate
    state = r.state
    alerts = []
    for i in range(34):  # the issue's 34 spill frames
        now += timedelta(seconds=0.5)
        r = observe(state, cls(i, now, 0.95), P, now)
        state, alerts = r.state, alerts + r.alerts
    assert [a.state.value for a in alerts] == ["confirmed"]


def test_producer_restart_with_new_epoch_is_taken_without_waiting() -> None:
    state, now = CameraState(camera_id="cam-1"), T0
    for i in range(5):
        now += timedelta(seconds=0.5)
        state = observe(state, cls(1_000_000 + i, now, epoch=1), P, now).state
    # restarted producer with a clock 60 s behind and seq from 0: a new epoch, taken at once
    r = observe(state, cls(0, now - timedelta(seconds=60), epoch=2), P, now)
    assert r.admission == Admission.NEW
    assert {m.epoch for m in r.state.streams} == {1, 2}


def test_two_producers_on_one_camera_are_both_taken() -> None:
    state, now = CameraState(camera_id="cam-1"), T0
    taken = 0
    for i in range(20):
        now += timedelta(seconds=0.25)
        epoch, seq = (1, 100 + i // 2) if i % 2 == 0 else (2, 5 + i // 2)
        r = observe(state, cls(seq, now, epoch=epoch), P, now)
        taken += r.admission.taken
        state = r.state
    assert taken == 20


def test_stale_rule_and_state_bound() -> None:
    state, now = CameraState(camera_id="cam-1"), T0
    state = observe(state, cls(1, now, epoch=1), P, now).state
    r = observe(state, cls(0, now - timedelta(seconds=STALE + 1), epoch=3), P, now)
    assert r.admission == Admission.STALE
    for e in range(20):  # many epochs: only the most recent MAX_STREAMS marks are kept
        now += timedelta(seconds=1)
        state = observe(state, cls(0, now, epoch=100 + e), P, now).state
    assert len(state.streams) == 8 and state.streams[0].epoch == 119


def test_state_saved_before_epochs_is_read_as_the_legacy_mark() -> None:
    old = CameraState.from_json(
        '{"camera_id":"cam-1","phase":"idle","last_seq":5,"last_capture":"2026-11-29T01:00:02.500000Z","window":[],'
        '"frames":6}'
    )
    now = T0 + timedelta(seconds=3)
    assert observe(old, cls(5, T0 + timedelta(seconds=2.5), epoch=None), P, now).admission == Admission.DUPLICATE
    assert observe(old, cls(6, now, epoch=None), P, now).admission == Admission.NEW
    assert observe(old, cls(0, now, epoch=REAL_EPOCH), P, now).admission == Admission.NEW  # an upgraded producer


def test_admit_is_pure_and_matches_observe() -> None:
    st0 = CameraState(camera_id="cam-1")
    assert admit(st0, None, 0, T0 + timedelta(seconds=AHEAD + 1), P, T0) == Admission.FUTURE
    assert admit(st0, None, 0, T0 + timedelta(seconds=AHEAD), P, T0) == Admission.NEW
