"""The `AlertOutput` interface and its registry by kind, and the queued delivery every output
shares: `send` puts the event in the output's on-disk queue and returns; one thread per output
delivers the queue in order, waiting with exponential backoff and jitter after a failure, so
a receiver that is down holds up nothing and loses nothing."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from vad.config.outputs import OutputsConfig
from vad.outputs.queue import DeliveryQueue
from vad.registry import Registry

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A delivery that failed. `retry`: whether trying again may help (the receiver is down
    or overloaded) or not (it refused this event: it is dropped and logged)."""

    def __init__(self, message: str, retry: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retry, self.retry_after = retry, retry_after


class AlertOutput(ABC):
    """Somewhere alert events go. `send` never blocks on the receiver."""

    name: str  # for logs, without secrets

    @abstractmethod
    def send(self, event: dict[str, Any]) -> None: ...

    def pending(self) -> int:
        """Events not delivered yet."""
        return 0

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is pending for up to `timeout` s; the rest stays queued on disk."""


class QueuedOutput(AlertOutput):
    """An output whose `deliver` sends one event; the queue and the retries are here."""

    def __init__(self, name: str, identity: str, settings: OutputsConfig):
        self.name, self.settings = name, settings
        self.delivered = self.refused = self.failures = 0
        path = Path(settings.queue_dir).expanduser() / (
            f"{name.split()[0]}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.sqlite")
        self.queue = DeliveryQueue(path, int(settings.queue_max_mb * 2**20))
        self._wake, self._stop = threading.Event(), threading.Event()
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"vad-output-{name.split()[0]}",
                                        daemon=True)
        self._thread.start()

    @abstractmethod
    def deliver(self, event: dict[str, Any]) -> None:
        """Send one event; DeliveryError (or any exception: retried) when it did not arrive."""

    def send(self, event: dict[str, Any]) -> None:
        self.queue.append(event)
        self._wake.set()

    def pending(self) -> int:
        return self.queue.pending()

    def _run(self) -> None:
        failed = 0
        while not self._stop.is_set():
            item = self.queue.oldest()
            if item is None:
                with self._idle:
                    self._idle.notify_all()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            seq, event = item
            try:
                self.deliver(event)
            except Exception as exc:  # noqa: BLE001 - every failure is retried or logged
                retry = getattr(exc, "retry", True)
                if not retry:
                    log.error("%s refused event %s, dropped: %s", self.name,
                              event.get("event_id"), exc)
                    self.refused += 1
                    self.queue.remove(seq)
                    continue
                failed += 1
                self.failures += 1
                wait = self._backoff(failed, getattr(exc, "retry_after", None))
                log.warning("%s: delivery failed (%s); %d queued, next try in %.1f s", self.name,
                            exc, self.queue.pending(), wait)
                self._stop.wait(wait)
                continue
            self.queue.remove(seq)
            self.delivered += 1
            if failed:
                log.warning("%s is back after %d failed attempt(s)", self.name, failed)
            failed = 0

    def _backoff(self, failed: int, retry_after: float | None) -> float:
        settings = self.settings
        wait = min(settings.retry_max_s, settings.retry_initial_s * 2 ** (failed - 1))
        wait *= random.uniform(0.8, 1.2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, settings.retry_max_s))
        return wait

    def wait_delivered(self, timeout: float) -> bool:
        """Block until the queue is empty (True) or `timeout` s pass (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self.queue.pending() == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._wake.set()
        if not self.wait_delivered(timeout):
            log.warning("%s: %d event(s) stay queued in %s for the next start", self.name,
                        self.queue.pending(), self.queue.path)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.queue.close()


OUTPUTS: Registry[AlertOutput] = Registry("alert output")


def register_output(kind: str):
    """Register an output class (constructed with its target section, the outputs section
    and the Kafka section) for `outputs.targets[].kind`."""
    return OUTPUTS.register(kind)
