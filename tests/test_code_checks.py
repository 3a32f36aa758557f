"""The code stays checkable: ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade; the rules
in pyproject.toml) finds nothing anywhere in the repository, and mypy (pyproject.toml's settings)
finds no type error in the product packages. A new finding fails here, in CI, not in review."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["spillwatch", "devstack", "producers", "processors", "alerting", "console", "training", "deploy"]


def _run(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def test_ruff_finds_nothing() -> None:
    r = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".", timeout=120)
    assert r.returncode == 0, f"ruff check found problems (fix, or `ruff check --fix`):\n{r.stdout[-6000:]}{r.stderr[-2000:]}"


def test_mypy_finds_no_type_error_in_the_product_packages() -> None:
    r = _run("mypy", "--no-error-summary", *PACKAGES, timeout=900)
    assert r.returncode == 0, f"mypy found type errors:\n{r.stdout[-8000:]}{r.stderr[-2000:]}"
