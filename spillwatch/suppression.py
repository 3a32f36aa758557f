"""Learned per-camera suppression of false alarms: the pure rules (no I/O; docs/suppression.md).

A *look* is what a firing spill-map cell shows: six numbers (``LOOK_FEATURES``, 0..255) measured
on the model's own input image (RGB, S x S) inside the cell — mean lightness and the two colour
axes (CIE Lab as OpenCV scales them), contrast (4 x the standard deviation of lightness), edges
(mean Sobel gradient of lightness / 2) and highlight (4 x (95th percentile - mean) of lightness:
gloss, glints). Workers measure it for the cells at or above the model's ``map_threshold`` only
(at most ``MAX_LOOK_CELLS``, strongest first) and send it in the Classification (``looks``).

An incident's frames (their firing cells and looks) are kept while it is suspected or open; a
false-alarm verdict turns them into an :class:`Entry`:

* **learn** (:func:`learn_cells`): a cell is learned when it fired in at least
  ``learn_min_frames`` of those frames *and* its look was stable there (robust spread —
  1.4826 x median absolute deviation — at most ``margin / 2`` on every feature). The entry keeps
  the cell's median look and that spread. A cell that a passer-by made fire once, or whose look
  kept changing, is not learned: it is no persistent look-alike.
* **match** (:func:`match`): a later frame's firing cell is suppressed by an entry of its camera
  only if it is one of the entry's cells (place) **and** every feature of its look lies within
  ``tolerance = min(2 x margin, margin + 2 x spread)`` of the learned look (look). Expired
  entries and entries of another map grid never match.
* **gate** (processors/confirmation.py ``effective_score``): the frame's score is computed like
  a zone gate over the cells that are *not* suppressed: any unsuppressed cell at or above
  ``map_threshold`` gives the full probability; otherwise the frame scores at most the largest
  map value away from the suppressed cells and their 8 neighbours (their sub-threshold halo).
  A frame with no suppressed cell keeps its score untouched.

Why a real spill on a once-falsely-flagged spot is still caught: its cells fire where the entry
has no cell (then they are never suppressed), or they fire on the entry's cells with a look that
differs from the learned one by more than the tolerance on some feature (then they are not
suppressed either); in both cases an unsuppressed cell at or above ``map_threshold`` gives the
frame its full probability. Only a liquid that stays inside the learned cells *and* looks like
the false alarm there (within at most 2 x margin on all six features) is suppressed.

The area cap (:func:`check_area`): the cells of a camera's active entries, plus a new one, may
cover at most ``max_area`` of the map (refused unless forced), with a warning above ``warn_area``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from spillwatch.events import (
    ENTRY_ID_PATTERN,
    LOOK_FEATURES,
    MAX_LOOK_CELLS,
    MAX_SUPPRESSING_ENTRIES,
    CellLook,
    Classification,
    SuppressedCells,
    UtcDatetime,
)

N_FEATURES = len(LOOK_FEATURES)
MAD_TO_SIGMA = 1.4826
MAX_CONFIRMATIONS = 50  # incidents kept in an entry's confirmed_by


# --------------------------------------------------------------------------- looks


def grid_of(spill_map: Sequence[Sequence[int]] | None) -> tuple[int, int] | None:
    """(rows, cols) of a quantised spill map, or None without a usable map."""
    if not spill_map or not spill_map[0]:
        return None
    cols = len(spill_map[0])
    if any(len(row) != cols for row in spill_map):
        return None
    return len(spill_map), cols


def firing_cells(spill_map: Sequence[Sequence[int]] | None, map_threshold: float, limit: int = MAX_LOOK_CELLS) -> list[int]:
    """Row-major indices of the cells at or above ``map_threshold`` (the map quantised 0..255, read
    as the aggregator reads it), strongest first, at most ``limit``."""
    if grid_of(spill_map) is None:
        return []
    flat = np.asarray(spill_map, dtype=np.float32).reshape(-1) / 255.0
    idx = np.flatnonzero(flat >= map_threshold)
    order = idx[np.argsort(-flat[idx], kind="stable")]
    return [int(i) for i in order[:limit]]


def cell_looks(image_rgb: np.ndarray, cells: Sequence[int], grid: tuple[int, int]) -> list[list[int]]:
    """``[cell, *LOOK_FEATURES]`` of each cell of ``image_rgb`` (uint8 RGB, H x W x 3: the model's
    input) cut into ``grid`` = (rows, cols) cells. Cheap: one colour conversion and one gradient of
    the image, then per-cell statistics over blocks of it (all cells at once when the grid divides
    the image evenly, as the model's map always does: S / 16 cells of 16 x 16 pixels; this runs on
    every firing frame in the worker)."""
    import cv2

    rows, cols = grid
    cells = [int(c) for c in cells if 0 <= int(c) < rows * cols]
    if not cells:
        return []
    h, w = image_rgb.shape[:2]
    lab = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2LAB)
    light = lab[..., 0].astype(np.float32)
    grad = cv2.magnitude(cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3))
    if h % rows == 0 and w % cols == 0:
        feats = _even_cell_features(lab, light, grad, cells, rows, cols)
    else:
        feats = _cell_features(lab, light, grad, cells, rows, cols)
    q = np.clip(np.rint(feats), 0, 255).astype(int)
    return [[c, *q[i].tolist()] for i, c in enumerate(cells)]


def _cell_features(lab: np.ndarray, light: np.ndarray, grad: np.ndarray, cells: Sequence[int], rows: int, cols: int) -> np.ndarray:
    """LOOK_FEATURES (unrounded) of each cell, one cell at a time: any grid (cells of uneven size)."""
    h, w = light.shape
    feats = np.empty((len(cells), N_FEATURES), dtype=np.float64)
    for i, c in enumerate(cells):
        y0, y1, x0, x1 = _cell_bounds(c, h, w, rows, cols)
        patch = light[y0:y1, x0:x1].astype(np.float64)
        mean = float(patch.mean())
        feats[i] = (
            mean,
            float(lab[y0:y1, x0:x1, 1].mean()),
            float(lab[y0:y1, x0:x1, 2].mean()),
            4.0 * float(patch.std()),
            float(grad[y0:y1, x0:x1].astype(np.float64).mean()) / 2.0,
            4.0 * (float(_p95(patch.reshape(-1))) - mean),
        )
    return feats


def _even_cell_features(lab: np.ndarray, light: np.ndarray, grad: np.ndarray, cells: Sequence[int], rows: int, cols: int) -> np.ndarray:
    """The same numbers as :func:`_cell_features` for a grid that divides the image evenly, every
    cell in one vectorised pass (the cells as rows of a (cells, pixels) array)."""
    idx = np.asarray(cells, dtype=np.intp)

    def blocks(a: np.ndarray) -> np.ndarray:
        bh, bw = a.shape[0] // rows, a.shape[1] // cols
        return a.reshape(rows, bh, cols, bw).swapaxes(1, 2).reshape(rows * cols, bh * bw)[idx].astype(np.float64)

    patch = blocks(light)
    mean = patch.mean(axis=1)
    return np.stack([
        mean,
        blocks(lab[..., 1]).mean(axis=1),
        blocks(lab[..., 2]).mean(axis=1),
        4.0 * patch.std(axis=1),
        blocks(grad).mean(axis=1) / 2.0,
        4.0 * (_p95(patch) - mean),
    ], axis=1)


def _cell_bounds(cell: int, h: int, w: int, rows: int, cols: int) -> tuple[int, int, int, int]:
    r, k = divmod(cell, cols)
    y0, x0 = r * h // rows, k * w // cols
    return y0, max(y0 + 1, (r + 1) * h // rows), x0, max(x0 + 1, (k + 1) * w // cols)


def _p95(rows: np.ndarray) -> np.ndarray:
    """The 95th percentile of each row (linear interpolation, as ``np.percentile``), cheaper for small patches."""
    s = np.sort(rows, axis=-1)
    pos = 0.95 * (s.shape[-1] - 1)
    lo = int(pos)
    hi = min(lo + 1, s.shape[-1] - 1)
    return s[..., lo] + (s[..., hi] - s[..., lo]) * (pos - lo)


# --------------------------------------------------------------------------- entries


class LearnedCell(BaseModel):
    """One learned cell of an entry: its place, its look and how much that look varied."""

    model_config = ConfigDict(frozen=True)

    cell: int = Field(ge=0, le=65535)
    look: list[int] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    spread: list[float] = Field(min_length=N_FEATURES, max_length=N_FEATURES)
    frames: int = Field(ge=1, description="frames of the incident in which the cell fired")

    def tolerance(self, margin: float) -> np.ndarray:
        return np.minimum(2.0 * margin, margin + 2.0 * np.asarray(self.spread, dtype=np.float64))

    def matches(self, features: Sequence[int], margin: float) -> bool:
        diff = np.abs(np.asarray(features, dtype=np.float64) - np.asarray(self.look, dtype=np.float64))
        return bool((diff <= self.tolerance(margin)).all())


class Entry(BaseModel):
    """A learned false alarm of one camera."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=ENTRY_ID_PATTERN)
    camera_id: str = Field(min_length=1, max_length=128)
    grid: tuple[int, int]
    cells: list[LearnedCell] = Field(min_length=1)
    incident_id: str = Field(description="the false alarm it was learned from")
    by: str = ""
    source: str = Field(default="", description="console, cli (spillwatch label / suppressions add), ack")
    created_at: UtcDatetime
    expires_at: UtcDatetime
    confirmed_at: UtcDatetime | None = Field(default=None, description="last time a later false alarm on its cells renewed it")
    confirmed_by: list[str] = Field(default_factory=list, description="incidents that renewed it")
    frames: int = Field(default=0, ge=0, description="frames of the incident it was learned from")
    model_version: str = ""
    forced: bool = Field(default=False, description="created above the area cap by --force / an admin")
    warning: str | None = None

    @property
    def cell_ids(self) -> frozenset[int]:
        return frozenset(c.cell for c in self.cells)

    @property
    def area(self) -> float:
        return len(self.cells) / float(self.grid[0] * self.grid[1])

    def active(self, now: datetime) -> bool:
        return now < self.expires_at

    def learned(self, cell: int) -> LearnedCell | None:
        return next((c for c in self.cells if c.cell == cell), None)


def entry_id(camera_id: str, incident_id: str) -> str:
    """Stable per incident: a repeated verdict on the same incident rewrites the same entry."""
    return "sup-" + hashlib.sha1(f"{camera_id}|{incident_id}".encode()).hexdigest()[:12]


class Observation(BaseModel):
    """One frame of an incident as kept for learning: its unsuppressed firing cells and their looks."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    camera_id: str
    seq: int
    capture_time: UtcDatetime
    grid: tuple[int, int]
    model_version: str = ""
    looks: list[CellLook]


def observation_of(c: Classification) -> Observation | None:
    """What a classification contributes to its incident's learning (None: no unsuppressed firing cell)."""
    grid = grid_of(c.spill_map)
    if grid is None or not c.looks:
        return None
    gone = suppressed_cells(c)
    looks = [lk for lk in c.looks if lk[0] not in gone]
    if not looks:
        return None
    return Observation(camera_id=c.camera_id, seq=c.seq, capture_time=c.capture_time, grid=grid,
                       model_version=c.model_version, looks=looks)


def learn_cells(observations: Sequence[Observation], *, margin: float, min_frames: int) -> tuple[tuple[int, int] | None, list[LearnedCell]]:
    """The grid and the learned cells of an incident's observations (rules in the module docstring).
    Observations of another grid than the most common one (a model changed mid-incident) are ignored."""
    if not observations:
        return None, []
    grids: dict[tuple[int, int], int] = {}
    for o in observations:
        g = (int(o.grid[0]), int(o.grid[1]))
        grids[g] = grids.get(g, 0) + 1
    grid = max(grids, key=lambda g: (grids[g], g))
    per_cell: dict[int, list[list[int]]] = {}
    for o in observations:
        if tuple(o.grid) != grid:
            continue
        seen: set[int] = set()
        for lk in o.looks:
            if lk[0] in seen:  # one look per cell and frame
                continue
            seen.add(lk[0])
            per_cell.setdefault(int(lk[0]), []).append(list(lk[1:]))
    cells: list[LearnedCell] = []
    for cell in sorted(per_cell):
        vecs = np.asarray(per_cell[cell], dtype=np.float64)
        if len(vecs) < min_frames:
            continue
        med = np.median(vecs, axis=0)
        spread = MAD_TO_SIGMA * np.median(np.abs(vecs - med), axis=0)
        if (spread > margin / 2.0).any():
            continue  # the look kept changing: not a persistent look-alike
        cells.append(LearnedCell(cell=cell, look=[int(round(v)) for v in med], spread=[round(float(s), 2) for s in spread],
                                 frames=len(vecs)))
    return grid, cells


# --------------------------------------------------------------------------- matching


def active_for(entries: Iterable[Entry], camera_id: str, now: datetime) -> list[Entry]:
    """The camera's entries that apply at ``now``, oldest first (the order :func:`match` tries them)."""
    return sorted((e for e in entries if e.camera_id == camera_id and e.active(now)), key=lambda e: (e.created_at, e.id))


def match(entries: Sequence[Entry], looks: Sequence[Sequence[int]], grid: tuple[int, int], margin: float) -> list[SuppressedCells]:
    """Which entry suppresses which firing cell (place and look; module docstring). ``entries`` are
    the camera's active ones, tried in order; a cell is suppressed by the first that matches."""
    by_entry: dict[str, list[int]] = {}
    for lk in looks:
        cell, features = int(lk[0]), lk[1:]
        for e in entries:
            if tuple(e.grid) != tuple(grid):
                continue
            learned = e.learned(cell)
            if learned is not None and learned.matches(features, margin):
                by_entry.setdefault(e.id, []).append(cell)
                break
    out = [SuppressedCells(entry=k, cells=sorted(v)) for k, v in by_entry.items()]
    return out[:MAX_SUPPRESSING_ENTRIES]


def suppressed_cells(c: Classification) -> frozenset[int]:
    """Every cell of ``c`` that some entry suppressed."""
    if not c.suppressed:
        return frozenset()
    return frozenset(cell for s in c.suppressed for cell in s.cells)


# --------------------------------------------------------------------------- area cap


@dataclass(frozen=True)
class AreaCheck:
    level: Literal["ok", "warn", "refuse"]
    area: float  # share of the map the camera's active entries would cover
    message: str


def check_area(new_cells: Iterable[int], existing: Iterable[Entry], grid: tuple[int, int], *, warn_area: float,
               max_area: float, camera_id: str) -> AreaCheck:
    """The camera's covered share after adding ``new_cells`` to its ``existing`` active entries."""
    cover = set(new_cells)
    for e in existing:
        if tuple(e.grid) == tuple(grid):
            cover |= e.cell_ids
    area = len(cover) / float(grid[0] * grid[1])
    pct = f"{area:.0%} of camera {camera_id}'s frame"
    if area > max_area:
        return AreaCheck("refuse", area, f"would suppress {pct} (suppression.max_area {max_area:.0%})")
    if area > warn_area:
        return AreaCheck("warn", area, f"suppressions now cover {pct} (suppression.warn_area {warn_area:.0%})")
    return AreaCheck("ok", area, f"suppressions cover {pct}")


# --------------------------------------------------------------------------- verdicts


Status = Literal["created", "refused", "nothing_to_learn", "disabled", "not_suppressed", "removed"]


class Outcome(BaseModel):
    """What an operator's verdict on an incident did to the suppressions (shown to the operator)."""

    incident_id: str
    verdict: Literal["spill", "clean"]
    status: Status
    entry_id: str | None = None
    renewed: list[str] = Field(default_factory=list, description="older entries on the same cells, renewed")
    removed: list[str] = Field(default_factory=list)
    cells: int = 0
    area: float | None = None
    warning: str | None = None
    message: str = ""
    by: str = ""
    at: UtcDatetime


@dataclass(frozen=True)
class Plan:
    """The writes a false-alarm verdict needs (pure decision, executed by the store)."""

    outcome: Outcome
    entry: Entry | None = None
    renewed: tuple[Entry, ...] = ()


def plan_false_alarm(
    incident_id: str,
    observations: Sequence[Observation],
    existing: Sequence[Entry],
    *,
    by: str,
    source: str,
    now: datetime,
    margin: float,
    min_frames: int,
    ttl: timedelta,
    warn_area: float,
    max_area: float,
    force: bool = False,
) -> Plan:
    """Learn an entry from a false alarm's observations; refuse it above the area cap unless
    ``force``; renew the camera's active entries that share a cell with it ("confirmed again")."""
    base = dict(incident_id=incident_id, verdict="clean", by=by, at=now)
    grid, cells = learn_cells(observations, margin=margin, min_frames=min_frames)
    if grid is None or not cells:
        why = ("no frame of this incident was kept with firing map cells (too old, from before suppression, or "
               "suppression off)") if grid is None else "no map cell fired with a stable look in enough of its frames"
        return Plan(Outcome(**base, status="nothing_to_learn", message=why))  # type: ignore[arg-type]
    camera = observations[0].camera_id
    eid = entry_id(camera, incident_id)
    others = [e for e in active_for(existing, camera, now) if e.id != eid]
    check = check_area((c.cell for c in cells), others, grid, warn_area=warn_area, max_area=max_area, camera_id=camera)
    if check.level == "refuse" and not force:
        return Plan(Outcome(**base, status="refused", cells=len(cells), area=check.area,  # type: ignore[arg-type]
                            message=f"not suppressed: {check.message}; force it with "
                                    f"`spillwatch suppressions add {incident_id} --force` or as a console admin"))
    warning = check.message if check.level != "ok" else None
    prev = next((e for e in existing if e.id == eid), None)
    entry = Entry(
        id=eid, camera_id=camera, grid=grid, cells=cells, incident_id=incident_id, by=by, source=source,
        created_at=prev.created_at if prev else now, expires_at=now + ttl, frames=len(observations),
        model_version=observations[-1].model_version, forced=check.level == "refuse", warning=warning,
        confirmed_at=prev.confirmed_at if prev else None, confirmed_by=prev.confirmed_by if prev else [],
    )
    mine = entry.cell_ids
    renewed = tuple(
        e.model_copy(update={"expires_at": now + ttl, "confirmed_at": now,
                             "confirmed_by": (e.confirmed_by + [incident_id])[-MAX_CONFIRMATIONS:]})
        for e in others if tuple(e.grid) == tuple(grid) and e.cell_ids & mine
    )
    msg = f"suppressed {len(cells)} map cell(s) of {camera} ({entry.area:.0%} of the frame) until {entry.expires_at:%Y-%m-%d}"
    return Plan(
        Outcome(**base, status="created", entry_id=eid, renewed=[e.id for e in renewed], cells=len(cells),  # type: ignore[arg-type]
                area=check.area, warning=warning, message=msg),
        entry,
        renewed,
    )
