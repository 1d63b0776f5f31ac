"""URLs fit to show: stores and cameras carry passwords in their URLs."""

from __future__ import annotations

from urllib.parse import urlparse


def redacted(url: str) -> str:
    """A URL fit to show or log: the password replaced by ***."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[1]
    user = f"{parsed.username}:" if parsed.username else ":"
    return parsed._replace(netloc=f"{user}***@{netloc}").geturl()
