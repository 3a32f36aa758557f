"""Builds tiny archives for tests through the real archiver decisions and store (no Kafka).

Frames are synthetic JPEGs from tests/helpers/tiny_model.py (red patch = spill), written to tmp_path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from processors.archive_policy import ArchivePolicy, Item, PolicyConfig
from processors.archive_store import ArchiveStore
from spillwatch.archive import IncidentRecord, append_incident
from tests.helpers.tiny_model import clean_jpeg, spill_jpeg

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Incident:
    incident_id: str
    first_seen_seq: int
    confirmed_seq: int
    cleared_seq: int | None = None


def t_of(seq: int, fps: float = 2.0, t0: datetime = T0) -> datetime:
    return t0 + timedelta(seconds=seq / fps)


def build_camera(
    root: Path,
    camera: str,
    n: int,
    spill_seqs: set[int],
    incidents: list[Incident],
    *,
    fps: float = 2.0,
    t0: datetime = T0,
    cfg: PolicyConfig | None = None,
) -> ArchivePolicy:
    """Feed ``n`` classified frames of one camera (score 0.95 on ``spill_seqs``, else 0.05) and
    the incidents' alerts (at their confirming / clearing frame) through policy + store."""
    cfg = cfg or PolicyConfig(low_score=0.5, sample_every=10, before_s=3.0, after_s=3.0, incident_max_s=600.0)
    policy = ArchivePolicy(cfg)
    store = ArchiveStore(root)
    spill, clean = spill_jpeg(), clean_jpeg()
    for seq in range(n):
        is_spill = seq in spill_seqs
        it = Item(
            camera=camera,
            seq=seq,
            capture_time=t_of(seq, fps, t0),
            score=0.95 if is_spill else 0.05,
            model_version="tiny-test-1",
            payload=spill if is_spill else clean,
        )
        store.write(policy.on_frame(it))
        for inc in incidents:
            for state, at_seq in (("confirmed", inc.confirmed_seq), ("cleared", inc.cleared_seq)):
                if at_seq != seq:
                    continue
                kw = dict(
                    incident_id=inc.incident_id,
                    camera=camera,
                    state=state,
                    first_seen=t_of(inc.first_seen_seq, fps, t0),
                    confirmed_at=t_of(inc.confirmed_seq, fps, t0),
                    cleared_at=t_of(inc.cleared_seq, fps, t0) if state == "cleared" and inc.cleared_seq is not None else None,
                )
                append_incident(root, IncidentRecord(**kw, before_s=cfg.before_s, after_s=cfg.after_s))  # type: ignore[arg-type]
                store.write(policy.on_alert(**kw))  # type: ignore[arg-type]
    return policy
