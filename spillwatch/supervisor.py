"""Child processes, started and stopped one way: the service harness of the demo, the benchmarks,
the replay, the embedded stack and the tests.

- :class:`ChildProcess`: one OS process with its own log file; SIGTERM, then SIGKILL after a grace
  period; on Linux a child also dies with the process that started it (no orphans after a crash),
  unless it is detached (``spillwatch stack up``).
- :class:`ServiceGroup`: ``spillwatch <role>`` subprocesses that share one way of receiving their
  settings: the parent's :class:`~spillwatch.settings.Settings` are written to a private YAML file
  (mode 0600) named by ``SPILLWATCH_CONFIG``, and every other ``SPILLWATCH_*`` variable is removed
  from the child's environment, so a child runs with exactly the settings it was given — nothing of
  the caller's shell leaks in. Readiness is a positive signal: the consumer groups the services join
  are Stable with their members (:meth:`ServiceGroup.wait_groups`). ``stop`` stops in reverse start
  order (producers first, so consumers drain what was sent).

A test that must run a service with a deployment's raw environment (the compose tests) passes
``env=`` instead of settings: that is the one other way, and it is explicit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from spillwatch.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from spillwatch.settings import Settings

log = get_logger("spillwatch.supervisor")


class ServiceError(RuntimeError):
    """A supervised service exited early or did not become ready; the message carries its log tail."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def pid_alive(pid: int, exe: str) -> bool:
    """True if ``pid`` runs ``exe`` (guards against a recycled pid read from a stale state file)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust kill(0)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    # servers may rewrite their title ("valkey-server 127.0.0.1:16379"): match the program name
    return os.path.basename(exe) in cmdline


class ChildProcess:
    """One child process and its log file. ``pid`` alone (no ``proc``) is a process started by an
    earlier invocation (a detached stack): it can still be checked and stopped."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, *, pid: int | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = Path(log_path)
        self.pid = pid
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, detached: bool = False, cwd: Path | None = None, show_output: bool = False) -> ChildProcess:
        """Start it; ``env`` is the child's whole environment. ``show_output``: stdout to the
        terminal (stderr still to the log)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=None if show_output else logf,
                stderr=logf if show_output else subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the parent is the parent's to handle
                preexec_fn=None if detached or sys.platform != "linux" else _die_with_parent,
            )
        self.pid = self.proc.pid
        return self

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid, self.argv[0])

    def signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGKILL in a fault test) if it still runs."""
        if self.running() and self.pid is not None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """Wait for the exit; the return code, or None if it still runs after ``timeout``."""
        if self.proc is not None:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        return 0

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL. Returns the exit code (None if unknown)."""
        if self.running():
            self.signal(signal.SIGTERM)
            if self.wait(grace_s) is None:
                log.warning("service did not stop in time; killing", service=self.name, grace_s=grace_s)
                self.signal(signal.SIGKILL)
                self.wait(5)
        return self.returncode

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def stop_all(children: Iterable[ChildProcess], grace_s: float = 15.0) -> None:
    """SIGTERM every running child at once, then wait for each (SIGKILL after ``grace_s``)."""
    kids = [c for c in children if c.running()]
    for c in kids:
        c.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for c in kids:
        if c.wait(max(0.0, deadline - time.monotonic())) is None:
            log.warning("service did not stop in time; killing", service=c.name, grace_s=grace_s)
            c.signal(signal.SIGKILL)
            c.wait(5)


def child_env(config_file: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``SPILLWATCH_*`` variable, plus ``SPILLWATCH_CONFIG``
    (when given) and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPILLWATCH_")}
    env["PYTHONUNBUFFERED"] = "1"
    if config_file is not None:
        env["SPILLWATCH_CONFIG"] = str(config_file)
    env.update(extra or {})
    return env


class ServiceGroup:
    """``spillwatch <role>`` child processes with their logs under ``work_dir``.

    ``settings`` is the group's default hand-off; ``start(..., settings=...)`` gives one child other
    settings (e.g. fewer inference threads). Use as a context manager to stop everything on exit."""

    def __init__(self, settings: Settings | None, work_dir: Path | str, *, cwd: Path | None = None) -> None:
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd
        self.children: list[ChildProcess] = []

    def start(
        self,
        role_args: list[str] | str,
        *,
        name: str | None = None,
        settings: Settings | None = None,
        env: dict[str, str] | None = None,
        show_output: bool = False,
    ) -> ChildProcess:
        """Start ``spillwatch <role_args>``. Settings (the group's unless given) reach it as its
        config file; ``env`` instead gives the child exactly that environment."""
        from spillwatch.settings import write_settings_file

        args = [role_args] if isinstance(role_args, str) else list(role_args)
        n = sum(1 for c in self.children if c.name.split("-")[0] == args[0])
        name = name or f"{args[0]}-{n + 1}"
        if env is None:
            s = settings or self.settings
            if s is None:
                raise ValueError("ServiceGroup.start needs settings (or an explicit env)")
            cfg = write_settings_file(s, self.work_dir / f"{name}.settings.yaml")
            env = child_env(cfg)
        child = ChildProcess(name, [sys.executable, "-m", "spillwatch.cli", *args], env, self.work_dir / f"{name}.log")
        child.start(cwd=self.cwd, show_output=show_output)
        self.children.append(child)
        log.debug("service started", service=name, pid=child.pid)
        return child

    def check_alive(self, *, exclude: Iterable[ChildProcess] = ()) -> None:
        """Raise ServiceError (with its log tail) if a child exited."""
        skip = set(map(id, exclude))
        for c in self.children:
            if id(c) not in skip and not c.running():
                raise ServiceError(f"{c.name} exited (code {c.returncode}):\n{c.tail()}")

    def wait_groups(self, members: dict[str, int], timeout_s: float = 90.0, settings: Settings | None = None) -> float:
        """Wait until each consumer group has that many members and is Stable; returns the seconds
        waited. Raises ServiceError when a child dies first or the time runs out."""
        from spillwatch.kafka import groups_ready

        s = settings or self.settings
        if s is None:
            raise ValueError("wait_groups needs settings to reach the broker")
        t0 = time.monotonic()
        while not groups_ready(s, members):
            self.check_alive()
            if time.monotonic() - t0 > timeout_s:
                tails = "\n".join(f"--- {c.name}\n{c.tail(8)}" for c in self.children)
                raise ServiceError(f"consumer groups {sorted(members)} not ready after {timeout_s:.0f} s\n{tails}")
            time.sleep(0.3)
        return time.monotonic() - t0

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop in reverse start order, producers before consumers (the last started first)."""
        for c in reversed(self.children):
            c.stop(grace_s)

    def stop_together(self, grace_s: float = 15.0) -> None:
        """SIGTERM all at once (faster when order does not matter), SIGKILL stragglers."""
        stop_all(self.children, grace_s)

    def __enter__(self) -> ServiceGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_together()
