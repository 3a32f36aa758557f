"""The aggregator's decisions recomputed offline from recorded classifications (no Kafka, no Redis).

``spillwatch aggregate FILE --out OUT [--without-suppression]`` feeds classifications (JSON lines,
as the ``classifications`` topic carries them) through the same pure state machine the aggregator
runs (processors/confirmation.py ``observe``), camera by camera in file order, with the camera
parameters of the settings and the model card's thresholds. ``--without-suppression`` drops the
frames' ``suppressed`` cells first: the incidents the pipeline would have raised without learned
suppression. ``spillwatch replay`` uses it to report false incidents with and without suppression
(training must not import the processors).

The processing time of each step is the frame's capture time (plus ``limits.capture_ahead_s`` is
never reached); escalation is a timer matter and is not recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from processors.confirmation import CameraState, observe, params_for
from spillwatch.events import Classification, EventError, SpillAlert
from spillwatch.settings import Settings


def confirm_offline(
    classifications: Iterable[Classification],
    settings: Settings,
    *,
    model_threshold: float,
    map_threshold: float,
    honour_suppression: bool = True,
) -> list[SpillAlert]:
    """Every alert (confirmed, cleared) the state machine emits for these classifications."""
    states: dict[str, CameraState] = {}
    alerts: list[SpillAlert] = []
    for c in classifications:
        if not honour_suppression and c.suppressed:
            c = c.model_copy(update={"suppressed": None})
        params = params_for(settings, c.camera_id, model_threshold=model_threshold, map_threshold=map_threshold)
        state = states.get(c.camera_id) or CameraState(camera_id=c.camera_id)
        result = observe(state, c, params, c.capture_time)
        states[c.camera_id] = result.state
        alerts += result.alerts
    return alerts


def read_classifications(path: Path) -> list[Classification]:
    """JSON lines of Classifications; a line that is not one is an error naming the line."""
    out: list[Classification] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Classification.from_bytes(line))
            except EventError as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None
    return out


def write_alerts(alerts: list[SpillAlert], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([json.loads(a.to_bytes()) for a in alerts], indent=1))
