"""A real redis-server as a local process, for tests and benchmarks of the lag monitor's storage.

The server runs from Debian's `redis-server` package (the Makefile installs it), on a free
loopback port, with persistence off and its data in a temp dir. `stop` and `start` keep the
port, so a test can take Redis away and bring it back the way an outage does.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kafkaops.testing.broker import free_port
from kafkaops.testing.jars import HarnessError


class RedisServer:
    """One redis-server on 127.0.0.1; `password` turns on the default user's password."""

    def __init__(self, port: int = 0, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.workdir = Path(tempfile.mkdtemp(prefix="kafkaops-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise HarnessError(
                "redis-server is not installed (apt-get install -y redis-server; `make test` "
                "does it)"
            )
        args = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until the server answers PING (with AUTH when a password is set)."""
        deadline = time.monotonic() + timeout
        auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
        while True:
            if not self.running:
                raise HarnessError(f"redis-server exited during start-up:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(auth + b"PING\r\n")
                    if b"+PONG" in _read_until(sock, b"PONG", 1.0):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"redis-server not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.workdir / "redis.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def storage_section(self, **keys: object) -> dict[str, object]:
        """A `[lag.storage]` table that uses this server."""
        redis: dict[str, object] = {"address": "127.0.0.1", "port": self.port}
        if self.password:
            redis["auth"] = {"enabled": True, "username": "default", "password": self.password}
        return {"type": "redis", "redis": redis, **keys}


def _read_until(sock: socket.socket, marker: bytes, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
