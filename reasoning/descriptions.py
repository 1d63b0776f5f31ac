"""Per-video description files: one `.txt` per video, line i = the description of frame i."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from vad.errors import VadError


def video_key(stem: str) -> str:
    """`test_01` -> `01`: the trailing id of a description file's name."""
    match = re.search(r"([A-Za-z0-9]+)$", stem)
    return match.group(1) if match else stem


def read_descriptions(directory: str | Path) -> dict[str, list[str]]:
    """One `.txt` per video, line i = the description of frame i."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VadError(f"{directory}: not a directory of description files")
    videos = {}
    for path in sorted(directory.glob("*.txt")):
        if path.stem.lower().startswith("rule"):
            continue
        videos[video_key(path.stem)] = path.read_text().splitlines()
    if not videos:
        raise VadError(f"{directory}: no description files (*.txt, one line per frame)")
    return videos


def write_descriptions(directory: str | Path, video: str, lines: Sequence[str],
                       prefix: str = "test") -> Path:
    path = Path(directory) / f"{prefix}_{video}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    return path
