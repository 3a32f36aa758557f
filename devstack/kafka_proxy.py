"""A broker behind a fault-injecting TCP proxy: hold the produce requests of chosen clients.

Fault tests need "the broker takes this worker's records but never acknowledges them" while its
consumer keeps fetching and committing (a slow or half-broken broker, a network that drops one
direction): that is when a stage holds a batch, and when a stop must not mark it done.
:class:`ProxiedBroker` starts the embedded broker advertising the proxy's address, so every client
connection goes through :class:`KafkaProxy`; ``hold_produce(client_id)`` stalls the connection of
any client whose next request is a Produce (API key 0) from a matching client id, until ``release``.
``refuse_produce(client_id)`` instead cuts such a connection at once (the client sees a broken
connection and retries: a flapping network). Only the Kafka request framing is read (size, API key, client id); nothing is rewritten.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from spillwatch.logs import get_logger

if TYPE_CHECKING:
    from spillwatch.supervisor import ChildProcess

log = get_logger("devstack.kafka_proxy")

PRODUCE_API_KEY = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def request_api_and_client(frame: bytes) -> tuple[int, str]:
    """API key and client id of a Kafka request (the frame without its 4-byte size)."""
    api_key = struct.unpack(">h", frame[:2])[0]
    if len(frame) < 10:
        return api_key, ""
    (n,) = struct.unpack(">h", frame[8:10])
    return api_key, frame[10 : 10 + max(0, n)].decode("utf-8", "replace")


class KafkaProxy:
    """TCP proxy to ``upstream`` (host, port); listens on ``port`` (0: a free one)."""

    def __init__(self, upstream: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self._srv = socket.create_server((host, port), reuse_port=False)
        self._srv.settimeout(0.2)
        self.host, self.port = self._srv.getsockname()[:2]
        self._open = threading.Event()
        self._open.set()  # cleared while produce requests are held
        self._hold_match: str | None = None
        self._refuse_match: str | None = None
        self._drop = False
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.held_requests = 0

    def start(self) -> KafkaProxy:
        threading.Thread(target=self._accept, name="kafka-proxy", daemon=True).start()
        return self

    def hold_produce(self, client_id_contains: str = "") -> None:
        """From now on, stall a connection when it sends a Produce request from a client whose id
        contains ``client_id_contains`` ("" = every client)."""
        self._hold_match = client_id_contains
        self._open.clear()

    def refuse_produce(self, client_id_contains: str = "") -> None:
        """From now on, cut a connection when it sends a Produce request from a matching client."""
        self._refuse_match = client_id_contains

    def release(self, *, drop: bool = False) -> None:
        """Let requests through again. ``drop``: the held requests are discarded and their
        connections closed (lost in the network) instead of delivered late."""
        self._drop = drop
        self._hold_match = None
        self._refuse_match = None
        self._open.set()

    def stop(self) -> None:
        self._stop.set()
        self._open.set()
        self._srv.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.close()
                except OSError:
                    pass

    # ------------------------------------------------------------------ plumbing
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, up):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, up]
            threading.Thread(target=self._requests, args=(client, up), daemon=True).start()
            threading.Thread(target=self._responses, args=(up, client), daemon=True).start()

    def _requests(self, client: socket.socket, up: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                head = _recv_exact(client, 4)
                if head is None:
                    break
                (size,) = struct.unpack(">i", head)
                frame = _recv_exact(client, size)
                if frame is None:
                    break
                api, client_id = request_api_and_client(frame)
                refuse = self._refuse_match
                if api == PRODUCE_API_KEY and refuse is not None and refuse in client_id:
                    self.held_requests += 1
                    return
                match = self._hold_match
                if api == PRODUCE_API_KEY and match is not None and match in client_id:
                    self.held_requests += 1
                    while not self._open.wait(0.2):
                        if self._stop.is_set():
                            return
                    if self._drop:
                        return
                up.sendall(head + frame)
        except OSError:
            pass
        finally:
            for s in (client, up):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _responses(self, up: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ProxiedBroker:
    """The embedded Tansu broker on a private port, advertised at a :class:`KafkaProxy`:
    ``bootstrap`` is the proxy's address, so all traffic of its clients passes through it."""

    def __init__(self, work_dir: Path, *, host: str = "127.0.0.1") -> None:
        from devstack.stack import free_port

        self.work_dir = Path(work_dir)
        self.host = host
        self.broker_port = free_port(host)
        self.proxy = KafkaProxy((host, self.broker_port), host=host)
        self.child: ChildProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.proxy.port}"

    def start(self) -> ProxiedBroker:
        from devstack.stack import broker_binary
        from spillwatch.kafka import broker_ready
        from spillwatch.supervisor import ChildProcess

        self.proxy.start()
        child = self.child = ChildProcess(
            "broker",
            [broker_binary(), "broker", "--listener-url", f"tcp://{self.host}:{self.broker_port}",
             "--advertised-listener-url", f"tcp://{self.host}:{self.proxy.port}", "--storage-engine", "memory://tansu/"],
            {**os.environ, "RUST_LOG": "warn"},
            self.work_dir / "proxied-broker.log",
        ).start()
        deadline = time.monotonic() + 20
        while not broker_ready(self.bootstrap, timeout_s=2.0):
            if not child.running() or time.monotonic() > deadline:
                raise RuntimeError(f"proxied broker not ready:\n{child.tail()}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(5.0)
        self.proxy.stop()

    def __enter__(self) -> ProxiedBroker:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
