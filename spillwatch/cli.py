"""The ``spillwatch`` command line. It only wires subcommands; each stage registers its own.

Every stage module ``<stage>/commands.py`` exposes ``register(app, groups)`` and must import heavy
dependencies (torch, faust, onnxruntime, cv2) inside the command functions, so ``spillwatch --help``
stays fast and the runtime image never needs torch.
"""

from __future__ import annotations

import importlib

import typer

from spillwatch.logs import configure_logging
from spillwatch.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="SpillWatch: liquid-spill detection from video.")
groups: dict[str, typer.Typer] = {
    "stack": typer.Typer(no_args_is_help=True, help="The embedded local stack (broker + Redis)."),
    "bench": typer.Typer(no_args_is_help=True, help="Benchmarks (print figures, write JSON)."),
    "alerts": typer.Typer(no_args_is_help=True, help="Subscribe to spill alerts."),
    "archive": typer.Typer(no_args_is_help=True, help="The frame archive."),
    "models": typer.Typer(no_args_is_help=True, help="Compare and manage models."),
}

_STAGES = (
    "spillwatch.stack_commands",
    "producers.commands",
    "processors.commands",
    "processors.archive_commands",
    "alerting.commands",
    "training.commands",
    "training.replay_commands",
    "spillwatch.demo_commands",
)


@app.callback()
def _root(
    log_level: str = typer.Option(None, help="DEBUG, INFO, WARNING (default from settings)"),
    log_format: str = typer.Option(None, help="json or console (default from settings)"),
) -> None:
    s = get_settings()
    configure_logging(log_level or s.log_level, log_format or s.log_format)


def _register_all() -> None:
    for name, group in groups.items():
        app.add_typer(group, name=name)
    for mod in _STAGES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:  # stage not built yet
                continue
            raise
        module.register(app, groups)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
