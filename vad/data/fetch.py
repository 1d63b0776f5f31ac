"""Resumable HTTP downloads into a cache folder.

The file grows as `NAME.part` and becomes NAME only once complete, so an interrupted download
resumes with an HTTP Range request where it stopped and a complete file is never downloaded
twice. Sizes are checked against Content-Length / Content-Range."""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from vad import __version__
from vad.errors import VadError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def cached_path(url: str, cache_dir: str | Path) -> Path:
    """Where the file of `url` is kept in the cache: its name in the URL."""
    name = Path(urlparse(url).path).name
    if not name:
        raise VadError(f"{url}: no file name in the URL")
    return Path(cache_dir).expanduser() / name


def download(url: str, dest: Path, progress: bool = True, timeout: float = TIMEOUT_S) -> Path:
    """`dest`, downloaded unless already complete; resumes `dest.part` when present."""
    if dest.is_file():
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VadError(f"{dest.parent}: cannot create the cache folder ({exc.strerror})") from None
    # The bar appears before connecting, so a newcomer sees the download start even when it fails.
    with tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024,
              disable=not progress) as bar:
        try:
            if not _fetch_rest(url, part, bar, timeout):
                part.unlink()  # not a prefix of the remote file: start again from byte 0
                _fetch_rest(url, part, bar, timeout)
        except urllib.error.HTTPError as exc:
            raise VadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, HTTPException) as exc:
            raise VadError(f"{url}: download failed ({getattr(exc, 'reason', None) or exc})"
                           f"{_kept(part)}") from None
    part.replace(dest)
    return dest


def _fetch_rest(url: str, part: Path, bar: tqdm, timeout: float) -> bool:
    """Append the missing bytes to `part`; False if the server says `part` cannot be resumed."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"vad/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after `offset`: complete, or a different file
            match = re.fullmatch(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "").strip())
            return bool(match) and int(match[1]) == offset
        raise
    with response:
        start, total = _span(url, response, offset)
        bar.reset(total)
        bar.update(start)
        with part.open("ab" if start else "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise VadError(f"{url}: download stopped at {size:,} of {total:,} bytes{_kept(part)}")
    return True


def _span(url: str, response, offset: int) -> tuple[int, int | None]:
    """(first byte, total size) of what the server sends, checked against the request."""
    if response.status == 206:
        header = response.headers.get("Content-Range", "").strip()
        match = _CONTENT_RANGE.fullmatch(header)
        if not match or int(match[1]) != offset or int(match[2]) != int(match[3]) - 1:
            raise VadError(f"{url}: asked for bytes {offset}- and got Content-Range {header!r}")
        return offset, int(match[3])
    # A full answer (200, or a server that ignores Range): the file starts again from byte 0.
    length = response.headers.get("Content-Length", "")
    return 0, int(length) if length.isdigit() else None


def _kept(part: Path) -> str:
    size = part.stat().st_size if part.is_file() else 0
    return f"; {size:,} bytes kept in {part}: run again to resume" if size else ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
