"""Webhooks: each alert event POSTed as JSON, signed so the receiver can tell it came from
here and was not replayed later:

    X-Vad-Timestamp: <Unix seconds of this attempt>
    X-Vad-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed by the secret>

2xx is delivered; a connection error, a timeout, 408, 425, 429 and 5xx are retried (with the
receiver's Retry-After, when it sends one); any other answer, redirects included, is a refusal
and the event is dropped (and logged)."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import urllib.error
import urllib.request
from typing import Any

from vad import __version__
from vad.config.outputs import OutputsConfig, WebhookOutputConfig
from vad.config.sections import KafkaConfig
from vad.errors import VadError
from vad.outputs.base import DeliveryError, QueuedOutput, register_output
from vad.outputs.events import encode_event
from vad.urls import redacted

RETRIED = {408, 425, 429}


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a moved receiver is a configuration error
        return None


@register_output("webhook")
class WebhookOutput(QueuedOutput):
    def __init__(self, target: WebhookOutputConfig, settings: OutputsConfig,
                 kafka: KafkaConfig | None = None):
        secret = os.environ.get(target.secret_env)
        if not secret:
            raise VadError(f"webhook {redacted(target.url)}: set the HMAC key in "
                           f"${target.secret_env} (outputs.targets[].secret_env)")
        self.target, self._secret = target, secret.encode()
        self._opener = urllib.request.build_opener(_NoRedirects)
        super().__init__(f"webhook {redacted(target.url)}", target.url, settings)

    def deliver(self, event: dict[str, Any]) -> None:
        body = encode_event(event)
        timestamp = str(int(time.time()))
        request = urllib.request.Request(self.target.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": f"vad/{__version__}",
            "X-Vad-Event": event["type"],
            "X-Vad-Event-Id": event["event_id"],
            "X-Vad-Timestamp": timestamp,
            "X-Vad-Signature": signature(self._secret, timestamp, body)})
        try:
            with self._opener.open(request, timeout=self.target.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            retry = exc.code in RETRIED or exc.code >= 500
            raise DeliveryError(f"HTTP {exc.code} {exc.reason}", retry=retry,
                                retry_after=_seconds(exc.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out, DNS
            raise DeliveryError(str(getattr(exc, "reason", exc))) from None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides
