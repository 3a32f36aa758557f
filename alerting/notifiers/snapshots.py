"""Evidence snapshots: the resolver lives in the core (spillwatch/snapshots.py), shared with the console."""

from spillwatch.snapshots import resolve_snapshot

__all__ = ["resolve_snapshot"]
