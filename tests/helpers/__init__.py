"""Test helpers (real broker, real Redis; no mocks). Test modules import helpers from here, never
from another test module (tests/test_layout.py checks).

Modules:

* ``waiting``: ``wait_until`` (poll a condition).
* ``kafka``: ``consume_all``, ``read_to_end``, ``TopicTail``; the settle signals ``settled_alerts``
  and ``settled_pages`` (positive signals instead of "sleep, then assert nothing arrived").
* ``cli``: ``run_cli`` (``spillwatch ...`` as a child process, configured by a private file).
* ``media``: ``make_video``, ``MjpegServer`` (a local HTTP camera).
* ``alerts``: ``make_alert``, ``ALERT_T0``.
* ``replay``: ``write_sequence``, ``SPILL`` (a labelled sequence for replays).
* ``tiny_model``: a tiny real ONNX model (red patch = spill) and matching images.
* ``archive_builder``: archives built through the real archiver decisions and store.
* ``lookalike``: the suppression proof clips (a look-alike the shipped model flags, spills).
* ``deploy``: ``REPO``, ``DEPLOY`` and deploy/'s modules (``composefile``, ``gen_env``, ``healthcheck``).
* ``markers``: the pytest plugin that makes the ``integration`` marker right (tests/conftest.py loads it).

The names of ``waiting``, ``kafka``, ``cli``, ``media``, ``alerts`` and ``replay`` are importable
from ``tests.helpers`` itself; the others from their module.
"""

from __future__ import annotations

from typing import Any

from tests.helpers.alerts import ALERT_T0, make_alert
from tests.helpers.cli import run_cli
from tests.helpers.kafka import (
    TopicTail,
    consume_all,
    read_to_end,
    settled_alerts,
    settled_pages,
)
from tests.helpers.waiting import wait_until

_LAZY = {  # imported on first use: they pull in OpenCV
    "make_video": "tests.helpers.media",
    "MjpegServer": "tests.helpers.media",
    "write_sequence": "tests.helpers.replay",
    "SPILL": "tests.helpers.replay",
}

__all__ = [
    "ALERT_T0",
    "SPILL",
    "MjpegServer",
    "TopicTail",
    "consume_all",
    "make_alert",
    "make_video",
    "read_to_end",
    "run_cli",
    "settled_alerts",
    "settled_pages",
    "wait_until",
    "write_sequence",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tests.helpers' has no attribute {name!r}")
