"""Learned suppression, the pure rules (spillwatch/suppression.py, docs/suppression.md): looks, learning,
place-and-look matching, the gate in the confirmation score, the area cap, the bounded event fields.
The rule that a real spill is still caught is checked here for every input hypothesis draws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.confirmation import CameraState, Phase, effective_score, incident_id, observe, params_for
from processors.suppression import FrameSuppressor, SuppressionCache, learning_incident
from spillwatch.events import MAX_EVENT_BYTES, MAX_LOOK_CELLS, Classification, SuppressedCells
from spillwatch.settings import Settings
from spillwatch.suppression import (
    Entry,
    LearnedCell,
    Observation,
    cell_looks,
    check_area,
    entry_id,
    firing_cells,
    learn_cells,
    match,
    observation_of,
    plan_false_alarm,
    suppressed_cells,
)

T0 = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)
GRID = (10, 10)
MARGIN = 10.0
THR = 0.5  # map threshold


def qmap(hot: dict[int, float], base: float = 0.05) -> list[list[int]]:
    flat = [int(round(255 * hot.get(i, base))) for i in range(100)]
    return [flat[r * 10:(r + 1) * 10] for r in range(10)]


def cls(seq: int, prob: float, hot: dict[int, float], looks: list[list[int]] | None = None,
        suppressed: list[SuppressedCells] | None = None, camera: str = "cam-1") -> Classification:
    return Classification(camera_id=camera, seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), spill_prob=prob,
                          spill_map=qmap(hot), model_version="m1", looks=looks, suppressed=suppressed)


def entry(cells: dict[int, list[int]], spread: float = 0.0, camera: str = "cam-1", expires_in_days: float = 30,
          created: datetime = T0, incident: str = "inc-1") -> Entry:
    return Entry(id=entry_id(camera, incident), camera_id=camera, grid=GRID,
                 cells=[LearnedCell(cell=c, look=look, spread=[spread] * 6, frames=5) for c, look in cells.items()],
                 incident_id=incident, by="op", source="test", created_at=created,
                 expires_at=created + timedelta(days=expires_in_days))


STAIN = [120, 128, 130, 60, 20, 40]  # a dark, matte, textured look


# --------------------------------------------------------------------------- looks


def test_looks_measure_colour_texture_and_gloss_of_each_cell() -> None:
    img = np.full((160, 160, 3), 200, np.uint8)  # light grey floor
    img[0:16, 16:32] = (200, 120, 30)  # cell 1: orange (juice-like), flat
    rng = np.random.default_rng(0)
    img[16:32, 0:16] = rng.integers(60, 120, (16, 16, 3))  # cell 10: dark and textured
    img[32:48, 32:48] = 90
    img[36:40, 36:40] = 255  # cell 22: dark with a glint
    looks = {lk[0]: lk[1:] for lk in cell_looks(img, [77, 1, 10, 22], GRID)}
    floor, orange, textured, glint = looks[77], looks[1], looks[10], looks[22]
    assert floor[3] == 0 and floor[4] == 0  # flat: no contrast, no edges
    assert abs(floor[1] - 128) <= 1 and abs(floor[2] - 128) <= 1  # grey: neutral colour axes
    assert orange[2] > floor[2] + 40  # orange is far on the blue-yellow axis
    assert textured[0] < floor[0] - 60 and textured[3] > 40 and textured[4] > 20
    assert glint[5] > textured[5]  # a highlight well above the cell's mean
    assert all(0 <= v <= 255 for lk in looks.values() for v in lk)


@pytest.mark.parametrize("size", [160, 192])
def test_looks_of_an_even_grid_are_the_per_cell_looks(size: int) -> None:
    """The worker measures the model's map grid (every cell 16 x 16 px) in one vectorised pass; it
    must give exactly the numbers of the per-cell definition that uneven grids use."""
    import cv2

    from spillwatch import suppression

    rng = np.random.default_rng(size)
    grid = (size // 16, size // 16)
    cells = list(range(0, grid[0] * grid[1], 3))
    for smooth in (False, True):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        if smooth:
            img = cv2.GaussianBlur(img, (7, 7), 2)
        lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
        light = lab[..., 0].astype(np.float32)
        grad = cv2.magnitude(cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3))
        even = suppression._even_cell_features(lab, light, grad, cells, *grid)
        one_by_one = suppression._cell_features(lab, light, grad, cells, *grid)
        np.testing.assert_allclose(even, one_by_one, rtol=0, atol=1e-9)
        looks = cell_looks(img, cells, grid)
        assert [lk[0] for lk in looks] == cells
        assert np.array_equal(np.array([lk[1:] for lk in looks]), np.clip(np.rint(one_by_one), 0, 255).astype(int))


def test_firing_cells_are_the_gate_cells_strongest_first_and_bounded() -> None:
    m = qmap({5: 0.9, 7: 0.6, 9: 0.5, 11: 0.49})
    assert firing_cells(m, 0.5) == [5, 7, 9]  # 0.5 quantises to 128/255 >= 0.5; 0.49 does not fire
    assert firing_cells(qmap({i: 0.8 for i in range(100)}), 0.5) == list(range(MAX_LOOK_CELLS))
    assert firing_cells(None, 0.5) == [] and firing_cells([[1, 2], [3]], 0.5) == []


# --------------------------------------------------------------------------- learning


def obs(seq: int, looks: dict[int, list[int]], grid: tuple[int, int] = GRID) -> Observation:
    return Observation(camera_id="cam-1", seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), grid=grid,
                       model_version="m1", looks=[[c, *v] for c, v in looks.items()])


def test_learning_keeps_persistent_stable_cells_only() -> None:
    rng = np.random.default_rng(1)
    frames = []
    for seq in range(20):
        looks = {62: [v + int(rng.integers(-2, 3)) for v in STAIN], 63: [200, 120, 140, 30, 10, 20]}
        if seq == 7:
            looks[64] = [50, 150, 100, 200, 90, 150]  # a passer-by made it fire once
        looks[70] = [int(rng.integers(0, 255)) for _ in range(6)]  # fires every frame, never the same look
        frames.append(obs(seq, looks))
    frames.append(obs(99, {62: STAIN}, grid=(8, 8)))  # another grid: ignored
    grid, cells = learn_cells(frames, margin=MARGIN, min_frames=2)
    assert grid == GRID
    assert [c.cell for c in cells] == [62, 63]
    c62 = cells[0]
    assert c62.frames == 20 and all(abs(a - b) <= 2 for a, b in zip(c62.look, STAIN, strict=True))
    assert max(c62.spread) <= MARGIN / 2
    assert learn_cells([], margin=MARGIN, min_frames=2) == (None, [])


def test_observation_leaves_out_suppressed_cells() -> None:
    c = cls(1, 0.9, {62: 0.9, 63: 0.8}, looks=[[62, *STAIN], [63, *STAIN]],
            suppressed=[SuppressedCells(entry="sup-0123456789ab", cells=[62])])
    o = observation_of(c)
    assert o is not None and [lk[0] for lk in o.looks] == [63]
    assert observation_of(cls(2, 0.9, {62: 0.9}, looks=[[62, *STAIN]], suppressed=[SuppressedCells(entry="sup-0123456789ab", cells=[62])])) is None
    assert observation_of(cls(3, 0.1, {})) is None


# --------------------------------------------------------------------------- matching and the gate


def test_a_cell_is_suppressed_only_on_its_place_and_with_its_look() -> None:
    e = entry({62: STAIN})
    same = [62, *[v + 3 for v in STAIN]]
    other_look = [62, *STAIN[:3], STAIN[3] + 25, *STAIN[4:]]  # more texture (a liquid's reflections)
    other_place = [63, *STAIN]
    assert match([e], [same], GRID, MARGIN) == [SuppressedCells(entry=e.id, cells=[62])]
    assert match([e], [other_look], GRID, MARGIN) == []
    assert match([e], [other_place], GRID, MARGIN) == []
    assert match([e], [same], (8, 8), MARGIN) == []  # another model's grid
    wide = entry({62: STAIN}, spread=4.0)  # learned with some spread: tolerance margin + 2 x spread
    assert match([wide], [[62, *STAIN[:3], STAIN[3] + 17, *STAIN[4:]]], GRID, MARGIN) != []
    assert LearnedCell(cell=1, look=STAIN, spread=[50.0] * 6, frames=2).tolerance(MARGIN).max() == 2 * MARGIN


def test_entries_apply_to_their_camera_until_they_expire() -> None:
    cache = SuppressionCache()
    e = entry({62: STAIN}, expires_in_days=1)
    cache.replace([e, entry({1: STAIN}, camera="cam-2", incident="inc-2")], 7)
    assert cache.for_camera("cam-1", T0 + timedelta(hours=23)) == [e]
    assert cache.for_camera("cam-1", T0 + timedelta(days=1)) == []
    assert cache.for_camera("cam-3", T0) == []


def test_the_gate_scores_a_frame_over_its_unsuppressed_cells() -> None:
    m = qmap({62: 0.95, 63: 0.9})
    assert effective_score(0.97, m, None, THR) == 0.97
    assert effective_score(0.97, m, None, THR, ()) == 0.97
    gated = effective_score(0.97, m, None, THR, {62, 63})
    assert gated == pytest.approx(round(0.05 * 255) / 255, abs=1e-6)  # only the background is left: far below any threshold
    assert effective_score(0.97, m, None, THR, {62}) == 0.97  # 63 still fires unsuppressed
    assert effective_score(0.97, qmap({62: 0.95, 88: 0.7}), None, THR, {62}) == 0.97  # a spill elsewhere counts
    assert effective_score(0.97, m, None, THR, {1000}) == 0.97  # a cell outside the map changes nothing
    zone = ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))  # lower half: rows 5..9
    assert effective_score(0.97, m, zone, THR, {62, 63}) < THR
    assert effective_score(0.97, qmap({62: 0.95, 20: 0.9}), zone, THR, {62}) < THR  # the unsuppressed cell is outside the zone


@pytest.mark.parametrize("threshold", [0.21, 0.69, 0.9])
def test_no_firing_cell_outside_the_suppressed_ones_is_below_the_threshold_whatever_the_threshold(threshold: float) -> None:
    """A model whose decision threshold (0.21) is below the map threshold (0.5): a frame whose only
    firing cells are suppressed must not count on the sub-map-threshold rest of its map (a passer-by
    beside the look-alike at 0.45), nor a frame on a zone's sub-threshold edge."""
    m = qmap({62: 0.95, 63: 0.9, 20: 0.45})
    assert effective_score(0.97, m, None, THR, {62, 63}, threshold) < threshold
    assert effective_score(0.97, m, None, THR, {62}, threshold) == 0.97  # 63 fires unsuppressed: full score
    zone = ((0.0, 0.0), (1.0, 0.0), (1.0, 0.3), (0.0, 0.3))  # rows 0..2: only the 0.45 cell
    assert effective_score(0.97, m, zone, THR, (), threshold) < threshold
    assert effective_score(0.97, qmap({20: 0.6}), zone, THR, (), threshold) == 0.97  # a firing cell in the zone
    assert effective_score(0.3, m, None, THR, {62, 63}, threshold) <= 0.3  # never above the frame's own probability
    if threshold >= THR:  # a threshold at or above the map threshold changes nothing (clearing keeps its meaning)
        assert effective_score(0.97, m, None, THR, {62, 63}, threshold) == effective_score(0.97, m, None, THR, {62, 63})


looks_st = st.lists(st.integers(0, 255), min_size=6, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    learned=st.dictionaries(st.integers(0, 99), looks_st, min_size=1, max_size=12),
    frame=st.dictionaries(st.integers(0, 99), st.tuples(st.floats(0.5, 1.0), looks_st), min_size=1, max_size=12),
    spread=st.floats(0, MARGIN / 2),
    prob=st.floats(0.0, 1.0),
)
def test_rule_a_firing_cell_off_the_learned_place_or_look_keeps_the_full_score(
    learned: dict[int, list[int]], frame: dict[int, tuple[float, list[int]]], spread: float, prob: float
) -> None:
    """The proof of the rule: whatever was learned, a frame keeps its full probability as soon as
    one firing cell lies outside the entry's cells, or differs from the learned look there by more
    than 2 x margin on one feature; and a frame with no suppressed cell keeps its score."""
    e = entry(learned, spread=spread)
    m = qmap({c: p for c, (p, _) in frame.items()})
    looks = [[c, *lk] for c, (_, lk) in frame.items()]
    sup = match([e], looks, GRID, MARGIN)
    score = effective_score(prob, m, None, THR, {c for s in sup for c in s.cells})
    escapes = [c for c, (_, lk) in frame.items()
               if c not in learned or max(abs(a - b) for a, b in zip(lk, learned[c], strict=True)) > 2 * MARGIN]
    if escapes or not sup:
        assert score == prob
    assert {c for s in sup for c in s.cells} <= set(learned)


def test_frame_suppressor_marks_the_matching_cells_and_is_fail_open() -> None:
    img = np.full((160, 160, 3), 200, np.uint8)
    look = cell_looks(img, [62], GRID)[0][1:]
    cache = SuppressionCache()
    cache.replace([entry({62: look})], 1)
    step = FrameSuppressor(cache, margin=MARGIN, map_threshold=THR)
    now = datetime.now(UTC)
    c = cls(1, 0.97, {62: 0.9, 88: 0.8}).model_copy(update={"classified_at": now})
    cache.replace([entry({62: look}, created=now)], 2)
    out = step.annotate(c, img)
    assert [lk[0] for lk in out.looks or []] == [62, 88]
    assert out.suppressed == [SuppressedCells(entry=entry_id("cam-1", "inc-1"), cells=[62])]
    assert step.annotate(cls(2, 0.2, {}), img).looks is None  # nothing fires: nothing measured
    assert step.annotate(c, np.zeros((0, 0), np.uint8)) == c  # a broken image: the frame counts unsuppressed


def test_a_flagged_frame_whose_map_fires_nowhere_is_judged_by_its_strongest_cell() -> None:
    """A passer-by hides part of the learned look-alike: no cell reaches the map threshold, the frame
    score stays high. Its strongest cell is the stain's, with the stain's look: suppressed, and the
    frame no longer counts. The same frame with its strongest cell elsewhere counts in full."""
    img = np.full((160, 160, 3), 200, np.uint8)
    now = datetime.now(UTC)
    cache = SuppressionCache()
    cache.replace([entry({62: cell_looks(img, [62], GRID)[0][1:]}, created=now)], 1)
    step = FrameSuppressor(cache, margin=MARGIN, map_threshold=THR)
    hidden = cls(1, 0.57, {62: 0.45, 63: 0.2}).model_copy(update={"classified_at": now})
    out = step.annotate(hidden, img)
    assert out.suppressed == [SuppressedCells(entry=entry_id("cam-1", "inc-1"), cells=[62])] and out.looks is None
    assert effective_score(0.57, out.spill_map, None, THR, suppressed_cells(out)) < 0.2
    elsewhere = cls(2, 0.57, {20: 0.45, 62: 0.3}).model_copy(update={"classified_at": now})
    assert step.annotate(elsewhere, img) == elsewhere
    assert FrameSuppressor(SuppressionCache(), margin=MARGIN, map_threshold=THR).annotate(hidden, img) == hidden  # no entries


# --------------------------------------------------------------------------- verdicts and the area cap


def test_area_cap_warns_then_refuses_unless_forced() -> None:
    assert check_area(range(5), [], GRID, warn_area=0.1, max_area=0.25, camera_id="c").level == "ok"
    assert check_area(range(12), [], GRID, warn_area=0.1, max_area=0.25, camera_id="c").level == "warn"
    assert check_area(range(5), [entry({i: STAIN for i in range(20, 42)})], GRID, warn_area=0.1, max_area=0.25,
                      camera_id="c").level == "refuse"

    def plan(cells: range, existing: list[Entry], force: bool = False) -> object:
        frames = [obs(s, {c: STAIN for c in cells}) for s in range(3)]
        return plan_false_alarm("inc-9", frames, existing, by="op", source="test", now=T0, margin=MARGIN, min_frames=2,
                                ttl=timedelta(days=30), warn_area=0.1, max_area=0.25, force=force)

    whole = plan(range(100), [])
    assert whole.outcome.status == "refused" and whole.entry is None and "--force" in whole.outcome.message
    forced = plan(range(100), [], force=True)
    assert forced.outcome.status == "created" and forced.entry is not None and forced.entry.forced
    warned = plan(range(12), [])
    assert warned.outcome.status == "created" and warned.outcome.warning and not warned.entry.forced


def test_a_new_false_alarm_on_the_same_cells_renews_the_older_entry() -> None:
    old = entry({62: STAIN, 63: STAIN}, expires_in_days=1)
    unrelated = entry({5: STAIN}, incident="inc-0", expires_in_days=1)
    later = T0 + timedelta(hours=20)
    frames = [obs(s, {63: [v + 30 for v in STAIN]}) for s in range(3)]  # the look drifted: a new entry, and a renewal
    p = plan_false_alarm("inc-2", frames, [old, unrelated], by="op", source="test", now=later, margin=MARGIN, min_frames=2,
                         ttl=timedelta(days=30), warn_area=0.1, max_area=0.25)
    assert p.outcome.status == "created" and p.entry is not None and p.entry.id == entry_id("cam-1", "inc-2")
    assert [e.id for e in p.renewed] == [old.id] and p.renewed[0].expires_at == later + timedelta(days=30)
    assert p.renewed[0].confirmed_by == ["inc-2"] and p.outcome.renewed == [old.id]
    nothing = plan_false_alarm("inc-3", [], [], by="op", source="test", now=T0, margin=MARGIN, min_frames=2,
                               ttl=timedelta(days=30), warn_area=0.1, max_area=0.25)
    assert nothing.outcome.status == "nothing_to_learn" and nothing.entry is None


# --------------------------------------------------------------------------- the state machine and the events


def test_suppressed_frames_do_not_confirm_and_a_spill_elsewhere_still_does() -> None:
    params = params_for(Settings(), "cam-1", model_threshold=0.85, map_threshold=THR)
    sup = [SuppressedCells(entry="sup-0123456789ab", cells=[62])]
    state = CameraState(camera_id="cam-1")
    for seq in range(10):  # the look-alike, suppressed: never a hit
        r = observe(state, cls(seq, 0.97, {62: 0.9}, suppressed=sup), params, T0 + timedelta(seconds=seq))
        state = r.state
        assert not r.alerts and r.score is not None and r.score < params.threshold
    confirmed_at = None
    for seq in range(10, 14):  # a spill elsewhere appears: counts at once
        r = observe(state, cls(seq, 0.99, {62: 0.9, 88: 0.9}, suppressed=sup), params, T0 + timedelta(seconds=seq))
        state = r.state
        if r.alerts:
            confirmed_at = seq
    assert confirmed_at == 12  # the third hit, as without any suppression (k = 3 of n = 5)
    assert learning_incident(state) == state.incident.id  # type: ignore[union-attr]


def test_learning_follows_the_suspicion_that_becomes_the_incident() -> None:
    st = CameraState(camera_id="c", phase=Phase.SUSPECTED, suspect_seq=4, suspect_since=T0)
    assert learning_incident(st) == incident_id("c", 4, T0)
    assert learning_incident(CameraState(camera_id="c")) is None


def test_classification_with_looks_stays_bounded_and_old_readers_are_fine() -> None:
    """The largest classification a worker can produce (a 10 x 10 map, 64 firing cells with looks at
    their largest, all suppressed by up to 16 entries) stays far below the event size limit."""
    entries = [f"sup-{i:012x}" for i in range(16)]
    cells = list(range(64))
    c = Classification(
        camera_id="c" * 128, seq=2**63 - 1, epoch=2**63 - 1, capture_time=T0, spill_prob=1.0, model_version="m" * 64,
        spill_map=qmap({i: 1.0 for i in range(100)}), looks=[[i, 255, 255, 255, 255, 255, 255] for i in cells],
        suppressed=[SuppressedCells(entry=e, cells=cells[k * 4:(k + 1) * 4]) for k, e in enumerate(entries)],
    )
    size = len(c.to_bytes())
    assert size < 6 * 1024 < MAX_EVENT_BYTES, size
    with pytest.raises(ValueError):
        Classification.model_validate({**c.model_dump(), "looks": [[1, 2, 3]]})  # a look has 7 numbers
    with pytest.raises(ValueError):
        SuppressedCells(entry="../../etc", cells=[1])
    old = Classification.from_bytes(b'{"camera_id":"c","seq":1,"capture_time":"2026-03-18T09:00:00Z","spill_prob":0.5,"model_version":"m"}')
    assert old.looks is None and suppressed_cells(old) == frozenset()


def test_the_archive_records_which_entry_suppressed_a_frame(tmp_path: object) -> None:
    from pathlib import Path

    from processors.archiver import Archiver
    from spillwatch.archive import load_archive
    from spillwatch.events import FrameHeader, encode_frame
    from tests.helpers.tiny_model import clean_jpeg

    root = Path(str(tmp_path)) / "archive"
    arch = Archiver(Settings(archive={"root": str(root)}), root)
    t = arch.settings.topics
    sup = [SuppressedCells(entry="sup-0123456789ab", cells=[62, 63])]
    for seq, marks in ((1, sup), (2, None)):
        c = cls(seq, 0.97, {62: 0.9, 63: 0.9}, looks=[[62, *STAIN], [63, *STAIN]], suppressed=marks)
        arch.handle(t.frames, encode_frame(FrameHeader(camera_id="cam-1", seq=seq, capture_time=c.capture_time, width=64, height=48), clean_jpeg()))
        arch.handle(t.classifications, c.to_bytes())
    frames = {f.seq: f for f in load_archive(root)}
    assert frames[1].suppressed_by == ["sup-0123456789ab"] and frames[2].suppressed_by is None
