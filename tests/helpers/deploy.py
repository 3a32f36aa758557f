"""deploy/'s Python files (not a package) loaded as modules, and where the repository and deploy/ are."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import click
import typer

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CONTAINER_MODEL_DIR = "/opt/spillwatch/models"  # deploy/Dockerfile: COPY models/ /opt/spillwatch/models/
SAMPLE_CLIP = REPO / "samples" / "clips" / "spill.mp4"


def load_deploy_module(name: str) -> ModuleType:
    """``deploy/<name>.py`` as module ``deploy_<name>`` (loaded once)."""
    mod_name = f"deploy_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, DEPLOY / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


composefile = load_deploy_module("composefile")
gen_env = load_deploy_module("gen_env_example")
healthcheck = load_deploy_module("healthcheck")


def spillwatch_command() -> click.Command:
    import spillwatch.cli

    return typer.main.get_command(spillwatch.cli.app)


def resolve_command(root: click.Command, args: list[str]) -> tuple[click.Command, list[str]]:
    cmd, rest = root, list(args)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"`spillwatch {' '.join(args)}`: no command {rest[0]!r}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spillwatch_executable() -> list[str]:
    """The `spillwatch` console script of this venv (the same entrypoint the image's venv has)."""
    script = Path(sys.executable).parent / "spillwatch"
    if script.exists():
        return [str(script)]
    found = shutil.which("spillwatch")
    assert found, "the spillwatch console script is not installed (pip install -e .)"
    return [found]


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPILLWATCH_")}


def metric_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        text = r.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))
