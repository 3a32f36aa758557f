"""The ``spillwatch`` command line. It only wires subcommands; each stage registers its own.

Every stage module ``<stage>/commands.py`` exposes ``register(app, groups)`` and must import heavy
dependencies (torch, faust, onnxruntime, cv2) inside the command functions, so ``spillwatch --help``
stays fast and the runtime image never needs torch.

Conventions shared by every command: ``--json`` prints JSON on stdout instead of text; ``--out
FILE`` writes the command's JSON result to a file; ``--report-dir DIR`` writes a folder of report
artefacts; ``--true/--false`` give an operator's verdict (a real spill / a false alarm); ``--speed X``
plays at X times real time, 0 as fast as possible. A configuration error is one line and exit
code 2; a broker or Redis that cannot be reached is one line naming the fix, exit code 1.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="SpillWatch: liquid-spill detection from video.",
)
groups: dict[str, typer.Typer] = {
    "stack": typer.Typer(no_args_is_help=True, help="The embedded local stack (broker + Redis)."),
    "bench": typer.Typer(no_args_is_help=True, help="Benchmarks (print figures, write JSON)."),
    "alerts": typer.Typer(no_args_is_help=True, help="Subscribe to spill alerts."),
    "archive": typer.Typer(no_args_is_help=True, help="The frame archive."),
    "models": typer.Typer(no_args_is_help=True, help="Compare and manage models."),
    "config": typer.Typer(no_args_is_help=True, help="Check the configuration."),
}

_STAGES = (
    "spillwatch.core_commands",
    "devstack.commands",
    "producers.commands",
    "processors.commands",
    "processors.archive_commands",
    "alerting.commands",
    "console.commands",
    "training.commands",
    "training.archive_commands",
    "training.replay_commands",
)


def package_version() -> str:
    try:
        return version("spillwatch")
    except PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        return "unknown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spillwatch {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    log_level: str = typer.Option(None, help="DEBUG, INFO, WARNING (default from settings)"),
    log_format: str = typer.Option(None, help="json or console (default from settings)"),
    _v: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version and exit"),
) -> None:
    from spillwatch.logs import configure_logging
    from spillwatch.settings import ConfigError, get_settings

    try:  # --help of a subcommand must work with a broken config: the command reports it
        s = get_settings()
        level, fmt = s.log_level, s.log_format
    except ConfigError:
        level, fmt = "INFO", "console"
    configure_logging(log_level or level, log_format or fmt)


def _register_all() -> None:
    for name, group in groups.items():
        app.add_typer(group, name=name)
    for mod in _STAGES:
        importlib.import_module(mod).register(app, groups)


_register_all()


def main() -> None:
    from spillwatch.errors import explain_fatal

    try:
        app()
    except Exception as exc:  # noqa: BLE001 - known operator errors become one line; others propagate
        message, code = explain_fatal(exc)
        if message is None:
            raise
        print(f"spillwatch: {message}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
