"""Resolving an alert's evidence snapshot to a local JPEG, safely (shared by alerting and the console).

Only files inside ``alerting.evidence_dir`` are ever read, attached or served: a snapshot
reference is data from the wire, and neither a page nor the console may hand out an arbitrary file
of this machine.
"""

from __future__ import annotations

from pathlib import Path

_SUFFIXES = {".jpg", ".jpeg"}


def resolve_snapshot(ref: str | None, evidence_dir: Path) -> Path | None:
    """The snapshot's path when ``ref`` names an existing JPEG under ``evidence_dir``, else None.

    ``ref`` may be absolute, relative to ``evidence_dir`` or relative to the working directory
    (the aggregator may store ``var/evidence/x.jpg``). URLs are not files: None.
    """
    if not ref or "://" in ref:
        return None
    root = evidence_dir.resolve()
    raw = Path(ref)
    candidates = [raw] if raw.is_absolute() else [root / raw, raw]
    for cand in candidates:
        try:
            path = cand.resolve()
        except OSError:
            continue
        if path.suffix.lower() in _SUFFIXES and path.is_relative_to(root) and path.is_file():
            return path
    return None
