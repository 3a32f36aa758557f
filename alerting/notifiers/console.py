"""Console: one readable line per page on stdout."""

from __future__ import annotations

import sys
from typing import TextIO

from alerting.formatting import one_line
from alerting.notifiers.base import DeliveryResult, Page


class ConsoleNotifier:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.name = "console"
        self._stream = stream

    def send(self, page: Page) -> DeliveryResult:
        stream = self._stream or sys.stdout
        try:
            print(f"PAGE {one_line(page.alert)}", file=stream, flush=True)
        except OSError as exc:
            return DeliveryResult.retry(f"stdout: {exc}")
        return DeliveryResult.sent("printed")

    def close(self) -> None:
        return None
