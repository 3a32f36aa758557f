"""The ``spillwatch`` command line. It only wires subcommands; each stage registers its own.

Every stage module ``<stage>/commands.py`` exposes ``register(app, groups)`` and must import heavy
dependencies (torch, faust, onnxruntime, cv2) inside the command functions, so ``spillwatch --help``
stays fast and the runtime image never needs torch.

Conventions shared by every command (one spelling per meaning):

- ``--json``: a flag; print the result as JSON on stdout instead of text.
- ``--out FILE``: write the command's JSON result to FILE.
- ``--report-dir DIR``: write a folder of report artefacts (curves, plots, worst errors).
- ``--true/--false``: an operator's verdict (a real spill / a false alarm).
- ``--speed X``: play at X times real time; 0 = as fast as possible.
- ``--wait S``: wait up to S seconds for the broker/Redis at start-up, then fail.
- ``--local``: bring an embedded broker + Redis for this one run.

Old spellings still work where that is cheap: hidden options that print one ``deprecated: use
--X`` line on stderr (spillwatch/cli_options.py). A configuration error is one line and exit code
2; a broker or Redis that cannot be reached is one line naming the fix, exit code 1.
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
    "spillwatch.suppression_commands",
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


# Commands whose ``--json`` used to take the output file (``--json FILE``, now ``--out FILE``).
_JSON_WAS_A_PATH = (("evaluate",), ("bench", "model"))
_ROOT_VALUE_OPTIONS = ("--log-level", "--log-format")


def legacy_argv(argv: list[str]) -> list[str]:
    """``evaluate --json FILE`` / ``bench model --json FILE`` still work (``--json`` is now a flag):
    rewritten to ``--out FILE`` with one ``deprecated`` line. These commands take no positional
    argument, so a value after ``--json`` can only be the old output file."""
    words: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _ROOT_VALUE_OPTIONS:
            i += 2
        elif argv[i].startswith(_ROOT_VALUE_OPTIONS):  # --log-level=DEBUG
            i += 1
        elif argv[i].startswith("-"):
            break
        else:
            words.append(argv[i])
            i += 1
    if not any(tuple(words[: len(c)]) == c for c in _JSON_WAS_A_PATH):
        return argv
    out = list(argv)
    for j in range(i, len(out)):
        value = out[j].removeprefix("--json=") if out[j].startswith("--json=") else None
        if value is None and out[j] == "--json" and j + 1 < len(out) and not out[j + 1].startswith("-"):
            value = out[j + 1]
            del out[j + 1]
        if value is not None:
            from spillwatch.cli_options import warn_deprecated

            warn_deprecated("--out FILE", "--json FILE")
            out[j : j + 1] = ["--out", value]
            break
    return out


def main() -> None:
    from spillwatch.errors import explain_fatal

    try:
        app(args=legacy_argv(sys.argv[1:]), prog_name="spillwatch")
    except Exception as exc:  # noqa: BLE001 - known operator errors become one line; others propagate
        message, code = explain_fatal(exc)
        if message is None:
            raise
        print(f"spillwatch: {message}", file=sys.stderr)
        sys.exit(code)


if __name__ == "__main__":
    main()
