"""deploy/'s Python files (not a package) loaded as modules, and where the repository and deploy/ are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


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
