"""Pure helpers that turn incident data into what the templates draw (inline SVG, no scripts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from console.models import IncidentDetail

W, H, PAD = 640.0, 170.0, 24.0
MAP_ON = 128  # spill-map cells at or above p = 0.5 are drawn


@dataclass(frozen=True)
class Chart:
    points: str  # SVG polyline points
    markers: list[tuple[float, str]]  # (x, label): first suspicious frame, confirmation
    dots: list[tuple[float, float, float]]  # (x, y, p)
    x0_label: str
    x1_label: str
    y_half: float
    source: str  # "timeline" (scores around the confirmation) or "window" (the confirming window only)


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def score_chart(inc: IncidentDetail) -> Chart | None:
    """Probability over capture time (timeline), or over the frames of the confirming window."""
    if len(inc.timeline) >= 2:
        xs = [p.t.timestamp() for p in inc.timeline]
        ys = [p.p for p in inc.timeline]
        source = "timeline"
    elif inc.scores:
        first, conf = inc.first_seen.timestamp(), inc.confirmed_at.timestamp()
        n = len(inc.scores)
        xs = [first + (conf - first) * i / max(1, n - 1) for i in range(n)] if n > 1 else [conf]
        ys = list(inc.scores)
        source = "window"
    else:
        return None
    t0, t1 = min(xs), max(xs)
    span = max(t1 - t0, 1e-6)

    def x(t: float) -> float:
        return round(PAD + (W - 2 * PAD) * (t - t0) / span, 1)

    def y(p: float) -> float:
        return round(PAD + (H - 2 * PAD) * (1.0 - max(0.0, min(1.0, p))), 1)

    markers = []
    for t, label in ((inc.first_seen.timestamp(), "first seen"), (inc.confirmed_at.timestamp(), "confirmed")):
        if t0 <= t <= t1:
            markers.append((x(t), label))
    return Chart(
        points=" ".join(f"{x(t)},{y(p)}" for t, p in zip(xs, ys, strict=True)),
        markers=markers,
        dots=[(x(t), y(p), p) for t, p in zip(xs, ys, strict=True)],
        x0_label=_hms(t0),
        x1_label=_hms(t1),
        y_half=y(0.5),
        source=source,
    )


@dataclass(frozen=True)
class Overlay:
    cells: list[tuple[float, float, float, float, float]]  # x, y, w, h (0..1000), opacity
    region: tuple[float, float, float, float] | None  # x, y, w, h (0..1000)


def overlay(inc: IncidentDetail) -> Overlay:
    """Spill-map cells (p >= 0.5) and the spill region, in a 1000 x 1000 box over the snapshot."""
    cells = []
    grid = inc.spill_map or []
    rows = len(grid)
    cols = max((len(r) for r in grid), default=0)
    for r, row in enumerate(grid):
        for c, v in enumerate(row):
            if v >= MAP_ON:
                cells.append((c * 1000 / cols, r * 1000 / rows, 1000 / cols, 1000 / rows, round(0.25 + 0.45 * v / 255, 2)))
    region = None
    if inc.region is not None:
        g = inc.region
        region = (g.x0 * 1000, g.y0 * 1000, max(1.0, (g.x1 - g.x0) * 1000), max(1.0, (g.y1 - g.y0) * 1000))
    return Overlay(cells, region)
