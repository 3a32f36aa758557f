"""The console service: Redis, the background feeds, the ASGI app and uvicorn, started and stopped together.

``ConsoleService(settings).run()`` serves in the foreground until SIGTERM/SIGINT (``spillwatch
console``); ``start()`` / ``stop()`` run it in a thread (tests). Uvicorn runs with the h11 protocol
and a request deadline (console/security.py), ``console.keep_alive_s`` for idle keep-alive
connections, ``console.max_connections`` (503 above) and no ``Server`` header.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from console.app import Console, create_app
from console.auth import (
    LoginThrottle,
    SessionStore,
    TokenStore,
    UserStore,
    ensure_admin,
)
from console.cameras import CameraBoard
from console.data import ConsoleData
from console.feeds import ConsoleFeeds
from console.incidents import IncidentIndex
from console.live import EventBus
from console.outages import OutageBoard
from console.security import guarded_protocol
from spillwatch.logs import get_logger
from spillwatch.metrics import start_metrics_server
from spillwatch.settings import Settings

log = get_logger("console.service")


def make_redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10)


def stores(settings: Settings, redis: Any) -> tuple[UserStore, TokenStore]:
    """The user and token stores (the CLI's ``console user|token`` commands use them too)."""
    prefix = settings.redis.key_prefix
    return UserStore(redis, prefix), TokenStore(redis, prefix)


class ConsoleService:
    def __init__(self, settings: Settings, *, redis: Any = None) -> None:
        self.settings = settings
        cfg = settings.console
        prefix = settings.redis.key_prefix
        self.redis = redis if redis is not None else make_redis(settings.redis.url)
        users, tokens = stores(settings, self.redis)
        index = IncidentIndex(self.redis, prefix, cfg.incident_retention_days * 86400)
        board = CameraBoard(history_s=cfg.timeline_before_s + cfg.timeline_after_s + 60.0)
        bus = EventBus()
        outages = OutageBoard()
        self.feeds = ConsoleFeeds(settings, self.redis, index, board, bus, outages)
        self.console = Console(
            settings=settings,
            redis=self.redis,
            users=users,
            sessions=SessionStore(self.redis, prefix, cfg.session_ttl_s),
            tokens=tokens,
            throttle=LoginThrottle(self.redis, prefix, cfg.login_max_failures, cfg.login_lockout_s),
            data=ConsoleData(settings, self.redis, index, board, outages),
            bus=bus,
            feeds=self.feeds,
        )
        self.app = create_app(self.console)
        self.server = self._server()
        self._thread: threading.Thread | None = None

    def _server(self) -> Any:
        import uvicorn

        cfg = self.settings.console
        config = uvicorn.Config(
            self.app,
            host=cfg.host,
            port=cfg.port,
            http=guarded_protocol(cfg.request_timeout_s),
            ws="none",
            lifespan="on",
            timeout_keep_alive=cfg.keep_alive_s,
            limit_concurrency=cfg.max_connections,
            timeout_graceful_shutdown=3,
            server_header=False,
            date_header=True,
            access_log=False,
            log_config=None,
        )
        return uvicorn.Server(config)

    @property
    def url(self) -> str:
        cfg = self.settings.console
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
        return f"http://{host}:{cfg.port}"

    def _prepare(self) -> None:
        self.redis.ping()
        secret = self.settings.console.admin_password
        if ensure_admin(self.console.users, secret.get_secret_value() if secret else None):
            log.info("first start: user 'admin' created from console.admin_password")
        if self.console.users.count() == 0:
            log.warning("no console user yet: create one with `spillwatch console user add NAME --role admin`")
        start_metrics_server(self.settings.console.metrics_port)
        self.feeds.start()

    def run(self) -> None:
        """Serve in the foreground until SIGTERM/SIGINT."""
        self._prepare()
        log.info("console started", url=self.url)
        try:
            self.server.run()
        finally:
            self.feeds.stop()
            log.info("console stopped")

    def start(self, timeout_s: float = 30.0) -> ConsoleService:
        """Serve in a background thread; returns once it accepts connections."""
        self._prepare()
        self._thread = threading.Thread(target=self.server.run, name="console-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.feeds.stop()
                raise RuntimeError(f"console did not start on {self.url}")
            time.sleep(0.05)
        log.info("console started", url=self.url)
        return self

    def stop(self) -> None:
        self.console.bus.close_all()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.feeds.stop()

    def __enter__(self) -> ConsoleService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
