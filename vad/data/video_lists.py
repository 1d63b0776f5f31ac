"""Video lists with video-level labels, in VadCLIP's format, and its temporal annotations.

A list is a CSV with a `path,label` header (nwpu-zxr/VadCLIP `list/*.csv`): `path` is a
`(snippets, dim)` float `.npy` of snippet features or a video file (relative paths are read
from the list's folder); `label` is the normal label (`Normal`, or XD-Violence's `A`) or the
anomaly classes, joined by `-` with `0` for none (XD-Violence's `B2-G-0`). Feature files of
one video's crops end in `__N` (`Abuse001_x264__5.npy`): the video's name drops it.

Temporal annotations (evaluation): UCF-Crime's `Temporal_Anomaly_Annotation.txt`
(`NAME CLASS START END START END`, -1 for none), XD-Violence's `annotations_multiclasses.txt`
(`NAME CLASS START END [CLASS START END]...`) or `annotations.txt` (`NAME START END ...`,
no classes); frames 0-based, the end excluded, as upstream's `make_gt*.py` read them.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streams.sources import open_source
from vad.data.training import ANOMALOUS, NORMAL, TrainingSet, TrainingVideo
from vad.errors import VadError

NORMAL_LABELS = frozenset({"Normal", "normal", "A"})
_CROP = re.compile(r"__\d+$")


@dataclass(frozen=True)
class ListedVideo:
    path: Path
    label: str

    @property
    def entry(self) -> str:
        """The file's name without suffix (one crop of a video)."""
        return self.path.stem

    @property
    def name(self) -> str:
        return video_name(self.path.stem)

    @property
    def anomalous(self) -> bool:
        return self.label not in NORMAL_LABELS

    @property
    def classes(self) -> tuple[str, ...]:
        """The anomaly classes of the label (none for a normal video)."""
        if not self.anomalous:
            return ()
        return tuple(part for part in self.label.split("-") if part and part != "0")

    @property
    def is_features(self) -> bool:
        return self.path.suffix.lower() == ".npy"

    def load_features(self) -> np.ndarray:
        return load_features(self.path)


def video_name(entry: str) -> str:
    """A video's name from one of its crops' entries: without the `__N` crop index."""
    return _CROP.sub("", entry)


def load_features(path: Path) -> np.ndarray:
    """A `(snippets, dim)` float feature file as float32; pickled arrays are refused."""
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise VadError(f"{path}: not a numeric .npy array ({exc})") from None
    if features.ndim != 2 or not len(features) or not np.issubdtype(features.dtype, np.floating):
        raise VadError(f"{path}: expected a (snippets, dim) float array, got "
                       f"{features.dtype} {features.shape}")
    if not np.isfinite(features).all():
        raise VadError(f"{path}: holds NaN or infinite values")
    return features.astype(np.float32, copy=False)


def read_video_list(path: str | Path) -> list[ListedVideo]:
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise VadError(f"{path}: cannot read the video list ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise VadError(f"{path}: not a CSV video list") from None
    if not rows or any(row.get("path") is None or not row.get("label") for row in rows):
        raise VadError(f"{path}: expected a CSV with a path,label header and one row per video")
    videos = []
    for row in rows:
        listed = Path(row["path"])
        video = ListedVideo(listed if listed.is_absolute() else path.parent / listed,
                            row["label"].strip())
        if not video.path.exists():
            raise VadError(f"{path}: {row['path']}: no such file")
        videos.append(video)
    return videos


def training_set_from_list(path: str | Path) -> TrainingSet:
    """Every listed entry (each crop of a video counts once, as upstream trains) with its
    video-level label and classes."""
    return TrainingSet(tuple(
        TrainingVideo(video.entry,
                      None if video.is_features else (lambda v=video: open_source(v.path)),
                      ANOMALOUS if video.anomalous else NORMAL, video.classes,
                      video.load_features if video.is_features else None)
        for video in read_video_list(path)))


Segment = tuple[int, int, str | None]  # start, end (excluded), class label (None: unknown)


def read_annotations(path: str | Path) -> dict[str, list[Segment]]:
    """Anomalous segments per video name, from any of the three annotation formats."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise VadError(f"{path}: cannot read annotations ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise VadError(f"{path}: not a text annotation file") from None
    annotations: dict[str, list[Segment]] = {}
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            segments = _segments(tokens[1:])
        except ValueError:
            raise VadError(f"{path}:{number}: expected NAME [CLASS] START END ..., got "
                           f"{line.strip()!r}") from None
        annotations[tokens[0].removesuffix(".mp4")] = segments
    if not annotations:
        raise VadError(f"{path}: no annotations")
    return annotations


def _segments(tokens: list[str]) -> list[Segment]:
    if not tokens:
        return []
    if not _is_number(tokens[0]):
        if len(tokens) == 5:  # UCF-Crime: CLASS START END START END, -1 for none
            label, bounds = tokens[0], [int(t) for t in tokens[1:]]
            return [(s, e, label) for s, e in zip(bounds[::2], bounds[1::2]) if s >= 0 and e >= 0]
        if len(tokens) % 3:
            raise ValueError(tokens)
        return [(int(tokens[i + 1]), int(tokens[i + 2]), tokens[i])
                for i in range(0, len(tokens), 3)]
    if len(tokens) % 2:
        raise ValueError(tokens)
    bounds = [int(t) for t in tokens]
    return [(s, e, None) for s, e in zip(bounds[::2], bounds[1::2])]


def _is_number(token: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", token))
