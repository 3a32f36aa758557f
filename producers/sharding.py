"""Which cameras a producer replica serves: ``--shard INDEX/COUNT`` over one shared cameras list.

Every replica reads the same cameras file and keeps the cameras whose shard is its own, so adding
a camera is adding a line to that file, and adding a replica is raising COUNT. The mapping is
rendezvous (highest-random-weight) hashing of the camera id: each camera goes to the shard with
the highest ``blake2b(camera_id, shard)`` score. It needs no coordination and no state, and it
moves as little as possible:

* adding or removing a camera moves no other camera;
* going from COUNT to COUNT + 1 replicas moves only the cameras the new shard wins (about
  1 / (COUNT + 1) of them); every other camera stays where it was.

>>> [shard_of(c, 3) for c in ("dock-1", "dock-2", "lobby")]
[1, 2, 2]
>>> parse_shard("2/4")
Shard(index=2, count=4)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from spillwatch.settings import CameraConfig

C = TypeVar("C", bound=CameraConfig)


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= INDEX < COUNT")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"INDEX/COUNT"`` (e.g. ``"0/4"``; a StatefulSet passes its pod index) -> :class:`Shard`."""
    index, sep, count = text.strip().partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(f"--shard {text!r}: expected INDEX/COUNT, e.g. 0/4")
    return Shard(int(index), int(count))


def _score(camera_id: str, shard: int) -> int:
    digest = hashlib.blake2b(f"{camera_id}\x00{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(camera_id: str, count: int) -> int:
    """The shard (0..count-1) that serves ``camera_id`` when there are ``count`` shards."""
    if count < 1:
        raise ValueError("count must be >= 1")
    return max(range(count), key=lambda i: _score(camera_id, i))


def cameras_for(cameras: Iterable[C], shard: Shard) -> list[C]:
    """The cameras of ``shard``, in file order."""
    return [c for c in cameras if shard_of(c.id, shard.count) == shard.index]
