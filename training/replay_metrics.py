"""Replay results -> metrics (pure, no I/O).

Frame level: the same keys as ``spillwatch evaluate`` (training/metrics.py ``summary``) over the
replayed frames that carry a label and got a classification.

Incident level, per camera in capture time:

* a *spill segment* is a run of frames labelled ``spill`` (a frame labelled ``clean`` or a capture
  gap longer than ``max_gap_s`` ends it; unlabelled frames neither end nor extend it);
* an incident is *open* from its confirmation until its clearing (``cleared_at``; an incident not
  cleared during the replay stays open to the end);
* an incident *detects* a segment of its camera when its confirming frame's capture time lies in
  [segment start, segment end + ``tolerance_s``] (the segment's time to page is the earliest such
  confirmation minus the capture time of the segment's first spill frame), or when it is already
  open at the segment's start (confirmed earlier, not yet cleared: nobody needs a second page for a
  spill that comes back after one or two clean frames). A segment that starts after the incident
  cleared needs an incident of its own;
* incident recall = detected segments / spill segments;
* an incident that detects no segment is a *false incident*; their rate is per camera-hour of the
  labelled cameras' footage. Camera-hours (per camera: last - first capture time, plus one frame
  interval) are reported for every replay, labelled or not.

Times are capture times, so a replay at any ``--speed`` gives the same numbers; wall-clock page
latency (publish of the confirming frame -> dry-run page) is reported apart.

Learned suppression (``suppression_report``): the same incident metrics with suppression (the
incidents the pipeline raised) and without (recomputed with the frames' suppression marks
dropped), false incidents per camera-hour for both, overall and per camera, and how many frames
each suppression entry suppressed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from training import metrics as frame_metrics


@dataclass(frozen=True)
class ReplayedFrame:
    camera: str
    seq: int
    capture_time: datetime
    label: str | None  # "spill" | "clean" | None
    score: float | None = None  # None: never classified (dead-lettered or lost)


@dataclass(frozen=True)
class ObservedIncident:
    incident_id: str
    camera: str
    first_seen: datetime
    confirmed_at: datetime
    page_latency_s: float | None = None  # wall clock: confirming frame published -> page
    cleared_at: datetime | None = None  # capture time of the clearing frame; None: open to the end

    def open_at(self, t: datetime) -> bool:
        """Confirmed before ``t`` and not cleared by then."""
        return self.confirmed_at < t and (self.cleared_at is None or self.cleared_at > t)


@dataclass
class Segment:
    camera: str
    start: datetime
    end: datetime
    first_seq: int
    last_seq: int
    frames: int
    incidents: list[str] = field(default_factory=list)  # confirmed in the segment (or within tolerance after)
    open_incidents: list[str] = field(default_factory=list)  # already open when the segment started
    time_to_page_s: float | None = None

    @property
    def detected(self) -> bool:
        return bool(self.incidents or self.open_incidents)

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "frames": self.frames,
            "detected": self.detected,
            "incidents": self.incidents,
            "open_incidents": self.open_incidents,
            "time_to_page_s": self.time_to_page_s,
        }


def _by_camera(frames: Sequence[ReplayedFrame]) -> dict[str, list[ReplayedFrame]]:
    out: dict[str, list[ReplayedFrame]] = {}
    for f in frames:
        out.setdefault(f.camera, []).append(f)
    for v in out.values():
        v.sort(key=lambda f: (f.capture_time, f.seq))
    return out


def spill_segments(frames: Sequence[ReplayedFrame], max_gap_s: float = 30.0) -> list[Segment]:
    segs: list[Segment] = []
    for cam, fs in _by_camera(frames).items():
        cur: Segment | None = None
        last_t: datetime | None = None
        for f in fs:
            gap = (f.capture_time - last_t).total_seconds() if last_t is not None else 0.0
            last_t = f.capture_time
            if cur is not None and (f.label == "clean" or gap > max_gap_s):
                segs.append(cur)
                cur = None
            if f.label == "spill":
                if cur is None:
                    cur = Segment(cam, f.capture_time, f.capture_time, f.seq, f.seq, 0)
                cur.end, cur.last_seq = f.capture_time, f.seq
                cur.frames += 1
        if cur is not None:
            segs.append(cur)
    return segs


def camera_hours(frames: Sequence[ReplayedFrame]) -> float:
    total = 0.0
    for fs in _by_camera(frames).values():
        if not fs:
            continue
        span = (fs[-1].capture_time - fs[0].capture_time).total_seconds()
        gaps = [(b.capture_time - a.capture_time).total_seconds() for a, b in pairwise(fs)]
        step = statistics.median(gaps) if gaps else 0.0
        total += span + step
    return total / 3600.0


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "max": None, "min": None}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values), "min": min(values)}


def incident_metrics(
    frames: Sequence[ReplayedFrame],
    incidents: Sequence[ObservedIncident],
    *,
    max_gap_s: float = 30.0,
    tolerance_s: float = 10.0,
) -> dict[str, Any]:
    labelled_cams = {f.camera for f in frames if f.label is not None}
    segs = spill_segments(frames, max_gap_s)
    detecting: set[str] = set()
    for inc in sorted(incidents, key=lambda i: i.confirmed_at):
        for s in segs:
            if s.camera != inc.camera:
                continue
            if s.start <= inc.confirmed_at and (inc.confirmed_at - s.end).total_seconds() <= tolerance_s:
                detecting.add(inc.incident_id)
                s.incidents.append(inc.incident_id)
                to_page = (inc.confirmed_at - s.start).total_seconds()
                s.time_to_page_s = to_page if s.time_to_page_s is None else min(s.time_to_page_s, to_page)
            elif inc.open_at(s.start):
                detecting.add(inc.incident_id)
                s.open_incidents.append(inc.incident_id)
    false = [i for i in incidents if i.incident_id not in detecting and i.camera in labelled_cams]
    by_camera: dict[str, dict[str, Any]] = {}
    for cam, fs in sorted(_by_camera(frames).items()):
        if cam not in labelled_cams:
            continue
        h = camera_hours(fs)
        n = sum(1 for i in false if i.camera == cam)
        by_camera[cam] = {"false_incidents": n, "camera_hours": h, "false_incidents_per_camera_hour": (n / h) if h > 0 else None}
    hours = camera_hours(frames)
    labelled_hours = camera_hours([f for f in frames if f.camera in labelled_cams])
    detected = [s for s in segs if s.detected]
    ttp = [s.time_to_page_s for s in segs if s.time_to_page_s is not None]
    lat = [i.page_latency_s for i in incidents if i.page_latency_s is not None]
    return {
        "labelled": bool(labelled_cams),
        "spill_segments": len(segs),
        "detected_segments": len(detected),
        "segments_under_open_incident": sum(1 for s in segs if s.open_incidents and not s.incidents),
        "recall": (len(detected) / len(segs)) if segs else None,
        "incidents": len(incidents),
        "false_incidents": len(false),
        "false_incident_ids": [i.incident_id for i in false],
        "camera_hours": hours,
        "labelled_camera_hours": labelled_hours,
        "false_incidents_per_camera_hour": (len(false) / labelled_hours) if labelled_hours > 0 else None,
        "false_by_camera": by_camera,
        "time_to_page_s": _stats(ttp),
        "page_latency_wall_s": _stats(lat),
        "segments": [s.as_dict() for s in segs],
    }


def frame_level(frames: Sequence[ReplayedFrame], threshold: float) -> dict[str, Any]:
    scored = [f for f in frames if f.label is not None and f.score is not None]
    y = [1 if f.label == "spill" else 0 for f in scored]
    p = [float(f.score) for f in scored]  # type: ignore[arg-type]
    out: dict[str, Any] = frame_metrics.summary(y, p, threshold)
    out["n_unlabelled"] = sum(1 for f in frames if f.label is None)
    out["n_unclassified"] = sum(1 for f in frames if f.score is None)
    return out


def suppression_report(
    suppressed: dict[tuple[str, int], list[str]],
    with_: dict[str, Any],
    without: dict[str, Any],
    *,
    copied: int = 0,
    recomputed: bool = False,
) -> dict[str, Any]:
    """With / without learned suppression, from two ``incident_metrics`` results of the same frames
    (``suppressed``: frame -> the entries that suppressed cells of it)."""
    by_entry: dict[str, int] = {}
    for entries in suppressed.values():
        for e in entries:
            by_entry[e] = by_entry.get(e, 0) + 1
    cams = sorted(set(with_["false_by_camera"]) | set(without["false_by_camera"]))
    key = "false_incidents_per_camera_hour"
    return {
        "entries_copied": copied,
        "frames_suppressed": len(suppressed),
        "frames_by_entry": dict(sorted(by_entry.items())),
        "recomputed_without": recomputed,
        "incidents": {"with": with_["incidents"], "without": without["incidents"]},
        "false_incidents": {"with": with_["false_incidents"], "without": without["false_incidents"]},
        key: {"with": with_[key], "without": without[key]},
        "recall": {"with": with_["recall"], "without": without["recall"]},
        "per_camera": {
            c: {
                "camera_hours": (with_["false_by_camera"].get(c) or without["false_by_camera"].get(c, {})).get("camera_hours"),
                "false_incidents": {"with": with_["false_by_camera"].get(c, {}).get("false_incidents"),
                                    "without": without["false_by_camera"].get(c, {}).get("false_incidents")},
                key: {"with": with_["false_by_camera"].get(c, {}).get(key), "without": without["false_by_camera"].get(c, {}).get(key)},
            }
            for c in cams
        },
        "without": without,
    }
