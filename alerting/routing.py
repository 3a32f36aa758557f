"""Pure routing: which pages an alert makes, and the ids that make each page happen once."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from spillwatch.events import AlertState, CameraAlertState

# A closing page waits for the pages that opened the incident on the same channel.
_OPENED_BY = {
    AlertState.CLEARED.value: (AlertState.CONFIRMED.value, AlertState.ESCALATED.value),
    CameraAlertState.RECOVERED.value: (CameraAlertState.OFFLINE.value, CameraAlertState.STALLED.value),
}


def job_id(incident_id: str, state: Enum | str, channel: str) -> str:
    """Identity of one page: incident + state + channel. Redeliveries map to the same id."""
    st = state.value if isinstance(state, Enum) else state
    return f"{incident_id}|{st}|{channel}"


def channels_for(
    state: AlertState,
    channels: Sequence[str],
    escalation_channels: Sequence[str],
    *,
    acknowledged: bool = False,
    escalated: bool = False,
) -> list[str]:
    """Channels to page for an alert in ``state``.

    - confirmed: the primary channels;
    - escalated: the escalation channels (the primary ones when none are configured), unless a
      responder already acknowledged the incident;
    - cleared: the primary channels, plus the escalation channels when the incident was escalated
      (so e.g. a PagerDuty incident opened by the escalation is resolved too).
    """
    if state == AlertState.CONFIRMED:
        out = list(channels)
    elif state == AlertState.ESCALATED:
        out = [] if acknowledged else list(escalation_channels or channels)
    else:
        out = list(channels) + (list(escalation_channels) if escalated else [])
    return list(dict.fromkeys(out))


def camera_channels(channels: Sequence[str], camera_channels: Sequence[str] | None) -> list[str]:
    """Channels paged for a camera outage and its recovery: ``alerting.camera_channels``, or the
    spill channels when it is not set (``[]``: camera outages page nobody). No escalation."""
    return list(dict.fromkeys(channels if camera_channels is None else camera_channels))


def escalation_due(
    *, now: float, due_at: float, acknowledged: bool, cleared: bool, has_escalation_channels: bool
) -> bool:
    """Whether the unacknowledged-incident timer should page the escalation channels now."""
    return has_escalation_channels and not acknowledged and not cleared and now >= due_at


def fallback_targets(
    channel: str, *, now: float, down_since: float | None, fallback_after_s: float, fallback_channels: Sequence[str]
) -> list[str]:
    """Channels that should carry a page that is failing on ``channel``: the fallback channels
    (other than ``channel`` itself) once ``channel`` has been failing for ``fallback_after_s``
    (since ``down_since``, the first failed try of its current outage). A page on a fallback
    channel never falls back further."""
    if down_since is None or channel in fallback_channels or now - down_since < fallback_after_s:
        return []
    return [c for c in dict.fromkeys(fallback_channels) if c != channel]


def parse_job_id(jid: str) -> tuple[str, str, str]:
    """(incident id, state, channel) of a job id. A string that is not a job id gives
    ``(jid, "?", "?")`` (a corrupt queue entry must still be accountable, never crash the caller)."""
    parts = jid.rsplit("|", 2)
    if len(parts) != 3:
        return jid, "?", "?"
    return parts[0], parts[1], parts[2]


def must_wait_for(jid: str) -> list[str]:
    """Pages that must be finished (sent or dead-lettered) before this one may go out.

    A ``cleared`` page waits for the same incident's ``confirmed``/``escalated`` page on the same
    channel (a camera's ``recovered`` for its ``offline``/``stalled`` page), so a responder (or
    PagerDuty) never sees "resolved" before "triggered" when the first page is still being retried.
    """
    incident, state, channel = parse_job_id(jid)
    return [job_id(incident, opener, channel) for opener in _OPENED_BY.get(state, ())]
