"""URLs fit to show: stores, cameras and webhooks carry passwords in their URLs."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlparse

# scheme://[user]:PASSWORD@ anywhere in a text (a message, an argument echoed back).
_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")


def redacted(url: str) -> str:
    """A URL fit to show or log: the password replaced by ***."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[1]
    user = f"{parsed.username}:" if parsed.username else ":"
    return parsed._replace(netloc=f"{user}***@{netloc}").geturl()


def redacted_text(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(r"\1***@", text)


class RedactingFilter(logging.Filter):
    """For log handlers: messages and tracebacks go out with URL passwords redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redacted_text(message), None
        if record.exc_text:
            record.exc_text = redacted_text(record.exc_text)
        record.exc_info = None
        return True
