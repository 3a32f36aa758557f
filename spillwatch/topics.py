"""Topic names. One place, so every stage agrees; a prefix isolates a namespace (e.g. a replay)."""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topics:
    """Names of the pipeline topics under an optional prefix (``""`` for the live namespace)."""

    prefix: str = ""

    def _n(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def frames(self) -> str:
        return self._n("frames")

    @property
    def classifications(self) -> str:
        return self._n("classifications")

    @property
    def spill_alerts(self) -> str:
        return self._n("spill-alerts")

    @property
    def camera_health(self) -> str:
        return self._n("camera-health")

    @property
    def camera_alerts(self) -> str:
        """Camera outages (CameraAlert): the camera monitor writes, alerting and the console read."""
        return self._n("camera-alerts")

    def dead_letter(self, topic: str) -> str:
        """The dead-letter topic for records rejected from ``topic`` (already prefixed)."""
        return f"{topic}{DLQ_SUFFIX}"

    @property
    def pages_dead_letter(self) -> str:
        """Pages that failed after the last retry."""
        return self._n("pages" + DLQ_SUFFIX)

    def all(self) -> list[str]:
        main = [self.frames, self.classifications, self.spill_alerts, self.camera_health, self.camera_alerts]
        return main + [self.dead_letter(t) for t in self.dead_lettered()] + [self.pages_dead_letter]

    def dead_lettered(self) -> list[str]:
        """Topics whose rejected records go to a dead-letter topic of their own."""
        return [self.frames, self.classifications, self.spill_alerts, self.camera_health, self.camera_alerts]
