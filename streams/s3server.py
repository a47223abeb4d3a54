"""A local S3 server (the npm package s3rver) under the embedded broker's durable storage.

Tansu keeps topics in memory unless given `s3://`; with a local S3 server writing to a
directory, everything the broker accepted survives a stop and start of the whole service:

    with LocalS3(Path("var/broker")) as s3:
        broker = EmbeddedBroker(storage=s3.storage, extra_env=s3.tansu_env())

s3rver is installed into `deploy/s3rver/node_modules` by `make` (`npm ci`). It ignores S3's
conditional writes, which Tansu relies on, so `streams.s3gate` stands in front of it: it makes
them atomic (without it, concurrent produces lost acknowledged records), mends Tansu's end
offsets and answers listings from an index of its own. Both are children of
this process: their own process group, SIGTERM when the parent dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from streams.broker import LOCALHOST, dies_with_this_process, free_port, stop_child

ROOT = Path(__file__).resolve().parents[1]
S3RVER = ROOT / "deploy" / "s3rver" / "node_modules" / ".bin" / "s3rver"
BUCKET = "tansu"
# s3rver accepts any request signed with these (its documented fixed credentials).
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"


class S3StartError(RuntimeError):
    """s3rver is missing, exited early or did not answer in time."""


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), 0.5):
        return True
    return False


class LocalS3:
    """s3rver on 127.0.0.1 with its data in `directory` and the broker's bucket configured."""

    def __init__(
        self, directory: Path, port: int | None = None, startup_timeout: float = 20.0
    ) -> None:
        self.directory = directory
        self.port = port or free_port()  # the gate's: what Tansu talks to
        self.s3rver_port = free_port()
        self.startup_timeout = startup_timeout
        self._procs: list[subprocess.Popen[bytes]] = []
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def storage(self) -> str:
        """Tansu's `--storage-engine` URL for this server."""
        return f"s3://{BUCKET}/"

    def tansu_env(self) -> dict[str, str]:
        """The environment Tansu reads its S3 endpoint and credentials from."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def command(self) -> list[str]:
        binary = os.environ.get("OUTAGE_S3RVER") or str(S3RVER)
        if not Path(binary).exists() and not shutil.which(binary):
            raise S3StartError(
                f"s3rver not found at {binary}: run `make` (it runs `npm ci --prefix "
                "deploy/s3rver`), or set OUTAGE_S3RVER to its path"
            )
        return [
            binary,
            "--directory",
            str(self.directory),
            "--address",
            LOCALHOST,
            "--port",
            str(self.s3rver_port),
            "--silent",
            # Requests come through the gate, signed for its address, not s3rver's.
            "--allow-mismatched-signatures",
            "--configure-bucket",
            BUCKET,
        ]

    def gate_command(self) -> list[str]:
        upstream = f"http://{LOCALHOST}:{self.s3rver_port}"
        return [
            sys.executable,
            "-m",
            "streams.s3gate",
            "--port",
            str(self.port),
            "--upstream",
            upstream,
        ]

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = (self.directory.parent / f"{self.directory.name}-s3rver.log").open("ab")
        try:
            for command, port in (
                (self.command(), self.s3rver_port),
                (self.gate_command(), self.port),
            ):
                self._spawn(command, port)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, command: list[str], port: int) -> None:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            cwd=ROOT,
            preexec_fn=dies_with_this_process(),
        )
        self._procs.append(proc)
        deadline = time.monotonic() + self.startup_timeout
        while not _answers(port):
            if proc.poll() is not None:
                raise S3StartError(f"{command[0]} exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise S3StartError(f"{command[0]} did not answer on port {port}")
            time.sleep(0.1)

    def stop(self) -> None:
        """The gate first, then s3rver (the order they were started in, reversed)."""
        while self._procs:
            stop_child(self._procs.pop(), timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
