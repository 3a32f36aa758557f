"""Running the ``spillwatch`` command line as a child process, configured the one way every child is."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from spillwatch.settings import Settings


def run_cli(settings: Settings, args: list[str], work_dir: Any, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``spillwatch <args>`` once, in a subprocess that receives ``settings`` the one way every
    child does (a private config file, no other SPILLWATCH_* variable); returns CompletedProcess."""
    from spillwatch.settings import REPO_ROOT, write_settings_file
    from spillwatch.supervisor import child_env

    cfg = write_settings_file(settings, Path(work_dir) / f"cli-{uuid.uuid4().hex[:8]}.settings.yaml")
    return subprocess.run([sys.executable, "-m", "spillwatch.cli", *args], env=child_env(cfg), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout_s, check=False)
