"""Acknowledgements: the contract lives in the core (spillwatch/acks.py), shared with the console."""

from spillwatch.acks import Ack, AckRequest, AckStore, Label

__all__ = ["Ack", "AckRequest", "AckStore", "Label"]
