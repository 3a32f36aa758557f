"""Old option spellings that still work: hidden options that print one ``deprecated:`` line.

A command declares the old spelling as a hidden option next to the new one and resolves both::

    out: Path = typer.Option(None, "--out", help="JSON result file"),
    old_report: Path = typer.Option(None, "--report", hidden=True),
    ...
    out = renamed(out, old_report, new="--out", old="--report")
"""

from __future__ import annotations

import sys
from typing import TypeVar

import typer

T = TypeVar("T")


def warn_deprecated(new: str, old: str) -> None:
    print(f"deprecated: use {new} instead of {old}", file=sys.stderr)


def renamed(new_value: T | None, old_value: T | None, *, new: str, old: str) -> T | None:
    """The value given with ``new``, or with its old spelling ``old`` (one line on stderr); both at
    once is a usage error."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise typer.BadParameter(f"{old} is the old spelling of {new}: give only {new}", param_hint=f"'{old}'")
    warn_deprecated(new, old)
    return old_value


def required(value: T | None, option: str, what: str) -> T:
    """A value an option must have (``renamed`` options cannot be marked required themselves)."""
    if value is None:
        raise typer.BadParameter(f"missing: {what}", param_hint=f"'{option}'")
    return value


def emit(result: object, as_json: bool, text: str) -> None:
    """Print a command's result: ``--json`` -> the JSON document on stdout, else ``text``."""
    import json

    typer.echo(json.dumps(result, indent=2, default=str) if as_json else text)
