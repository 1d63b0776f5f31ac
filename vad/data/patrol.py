"""The patrol data layout (docs/patrol.md): per sequence a reference pass, a query pass, one
ground-truth mask per query frame and optional poses.

    ROOT/<sequence>/reference/000000.jpg ...   the reference pass
    ROOT/<sequence>/query/000000.jpg ...       the query pass (other speed, other start)
    ROOT/<sequence>/mask/000000.png ...        per query frame: 0 normal, 128 anomalous, 255 ignore
    ROOT/<sequence>/poses.csv                  optional: split,frame,x,y,yaw
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streams.sources import IMAGE_SUFFIXES, FolderSource, natural_key
from vad.errors import VadError

NORMAL, ANOMALOUS, IGNORE = 0, 128, 255
SPLITS = ("reference", "query")
POSE_COLUMNS = ("split", "frame", "x", "y", "yaw")


@dataclass(frozen=True)
class RoutePoses:
    """Poses (x, y, yaw) of the frames of a pass, by frame index."""

    frames: np.ndarray  # (N,) int64
    poses: np.ndarray  # (N, 3) float64: x, y, yaw (degrees)

    def of(self, frame: int) -> np.ndarray | None:
        found = np.nonzero(self.frames == frame)[0]
        return self.poses[found[0]] if len(found) else None

    def dense(self, count: int) -> np.ndarray:
        """(count, 3) poses of frames 0..count-1; VadError when one is missing."""
        order = np.argsort(self.frames)
        frames, poses = self.frames[order], self.poses[order]
        if len(frames) < count or not np.array_equal(frames[:count], np.arange(count)):
            raise VadError(f"poses: frames 0..{count - 1} need a pose each")
        return poses[:count]


def read_poses(path: str | Path) -> dict[str, RoutePoses]:
    """`split,frame,x,y,yaw` rows -> poses per split (reference, query)."""
    path = Path(path)
    rows: dict[str, list[tuple[int, float, float, float]]] = {}
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != POSE_COLUMNS:
                raise VadError(f"{path}: expected the columns {','.join(POSE_COLUMNS)}")
            for row in reader:
                if row["split"] not in SPLITS:
                    raise VadError(f"{path}: unknown split {row['split']!r} (reference, query)")
                values = (int(row["frame"]), float(row["x"]), float(row["y"]), float(row["yaw"]))
                if not np.isfinite(values[1:]).all():
                    raise VadError(f"{path}: a pose is not finite")
                rows.setdefault(row["split"], []).append(values)
    except OSError as exc:
        raise VadError(f"{path}: cannot read poses ({exc.strerror})") from None
    except (ValueError, TypeError):
        raise VadError(f"{path}: frame must be an integer and x, y, yaw numbers") from None
    poses = {}
    for split, values in rows.items():
        array = np.array(values, dtype=np.float64)
        if len(np.unique(array[:, 0])) != len(array):
            raise VadError(f"{path}: a {split} frame has two poses")
        poses[split] = RoutePoses(array[:, 0].astype(np.int64), array[:, 1:])
    return poses


def write_poses(path: Path, poses: dict[str, np.ndarray]) -> None:
    """Poses (N, 3) per split, frames numbered from 0."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(POSE_COLUMNS)
        for split, array in poses.items():
            for frame, (x, y, yaw) in enumerate(array):
                writer.writerow([split, frame, f"{x:.3f}", f"{y:.3f}", f"{yaw:.3f}"])


def frame_files(folder: Path) -> list[Path]:
    """Image files of a pass in their frame order."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                  key=natural_key) if folder.is_dir() else []


def read_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A ground-truth (or predicted) mask: 8-bit, values 0, 128 and 255 only."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.dtype != np.uint8 or mask.ndim != 2:
        raise VadError(f"{path}: not an 8-bit single-channel PNG mask")
    if shape is not None and mask.shape != tuple(shape):
        raise VadError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its query frame "
                       f"{shape[1]}x{shape[0]}")
    if not np.isin(mask, (NORMAL, ANOMALOUS, IGNORE)).all():
        raise VadError(f"{path}: mask values must be 0 (normal), 128 (anomalous), 255 (ignore)")
    return mask


@dataclass(frozen=True)
class PatrolSequence:
    name: str
    root: Path

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"

    @property
    def query_dir(self) -> Path:
        return self.root / "query"

    @property
    def mask_dir(self) -> Path:
        return self.root / "mask"

    def reference(self) -> FolderSource:
        return FolderSource(self.reference_dir, camera_id=self.name)

    def query(self) -> FolderSource:
        return FolderSource(self.query_dir, camera_id=self.name)

    def poses(self) -> dict[str, RoutePoses]:
        path = self.root / "poses.csv"
        return read_poses(path) if path.is_file() else {}

    def mask_files(self) -> list[Path]:
        return frame_files(self.mask_dir)

    def masks(self, shape: tuple[int, int]) -> Iterator[np.ndarray]:
        """The ground truth of each query frame, in order."""
        for path in self.mask_files():
            yield read_mask(path, shape)


def load_patrol_root(root: str | Path) -> list[PatrolSequence]:
    """The sequences of a patrol root, each checked for the layout's parts."""
    root = Path(root)
    if not root.is_dir():
        raise VadError(f"{root}: no such patrol folder")
    sequences = [PatrolSequence(p.name, p) for p in sorted(root.iterdir(), key=natural_key)
                 if p.is_dir()]
    if not sequences:
        raise VadError(f"{root}: no sequences (expected ROOT/<sequence>/reference, query, mask)")
    for sequence in sequences:
        for part in ("reference", "query", "mask"):
            if not frame_files(sequence.root / part):
                raise VadError(f"{sequence.root / part}: no frames (docs/patrol.md)")
        queries, masks = len(frame_files(sequence.query_dir)), len(sequence.mask_files())
        if queries != masks:
            raise VadError(f"{sequence.root}: {queries} query frames but {masks} masks")
    return sequences
