"""Polling for a condition (the positive signal a test waits for)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(pred: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
