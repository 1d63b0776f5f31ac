"""The official UCSD Anomaly Detection archive (Mahadevan et al., CVPR 2010): read its layout,
check its structure, and convert a subset (Ped1, Ped2) into the layout `vad eval` reads.

Official: `UCSD_Anomaly_Dataset.v1p2/UCSDpedN/{Train/TrainNNN/*.tif, Test/TestNNN/*.tif,
Test/TestNNN_gt/*.bmp (pixel masks, some videos), Test/UCSDpedN.m (frame intervals)}`.
Converted (as ../shared/data/ped2): `train/NN.mp4`, `test/NN.mp4`, `test_labels.csv`,
`test_masks/NN.npz`, `meta.json`.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from tqdm import tqdm

from streams.sources import FolderSource
from vad.data.fetch import cached_path, download, file_sha256
from vad.errors import VadError

log = logging.getLogger(__name__)

FPS = 10
CRF = 18
MASK_SUFFIXES = {".bmp", ".png", ".tif"}
# `TestVideoFile{end+1}.gt_frame = [61:180];` in the official files; `TestDataset{3}...` accepted.
_GT_ENTRY = re.compile(r"\w+\{([^}]*)\}\.gt_frame\s*=\s*\[([^\]]*)\]")
# macOS metadata the archive carries beside real files (`._001.tif` would pass for a frame).
_MAC_METADATA = re.compile(r"\._.*|\.DS_Store")


@dataclass(frozen=True)
class UcsdSubset:
    """One subset of the archive and the structure it must have."""

    folder: str
    train_videos: int
    test_videos: int
    train_frames: int
    test_frames: int


SUBSETS = {
    "ped1": UcsdSubset("UCSDped1", train_videos=34, test_videos=36, train_frames=6800,
                       test_frames=7200),
    "ped2": UcsdSubset("UCSDped2", train_videos=16, test_videos=12, train_frames=2550,
                       test_frames=2010),
}


@dataclass
class OfficialTest:
    folder: Path
    intervals: list[tuple[int, int]]  # anomalous frames, 1-based inclusive, as in the .m file
    labels: np.ndarray  # (frames,) 0/1
    gt_dir: Path | None  # pixel masks, where the dataset has them


@dataclass
class OfficialLayout:
    root: Path
    train: list[Path]
    test: list[OfficialTest]


def find_gt_file(root: Path) -> Path | None:
    """`UCSDpedN.m`: in Test/ in the archive; beside Test/ is accepted too."""
    files = sorted(root.glob("UCSDped*.m")) + sorted((root / "Test").glob("UCSDped*.m"))
    return files[0] if files else None


def read_official_layout(root: Path) -> OfficialLayout:
    gt_file = find_gt_file(root)
    if gt_file is None:
        raise VadError(f"{root}: no UCSDpedN.m ground-truth file (in Test/ or beside it)")
    try:
        intervals = parse_ucsd_gt(gt_file.read_text(errors="replace"))
    except VadError as exc:
        raise VadError(f"{gt_file}: {exc}") from None
    folders = video_folders(root / "Test", "Test")
    if len(folders) != len(intervals):
        raise VadError(f"{gt_file}: {len(intervals)} ground-truth entries for "
                       f"{len(folders)} test folders")
    test = []
    for folder, ranges in zip(folders, intervals):
        labels = np.zeros(len(FolderSource(folder)), dtype=np.int64)
        for start, end in ranges:
            labels[start - 1:end] = 1
        gt_dir = folder.with_name(f"{folder.name}_gt")
        test.append(OfficialTest(folder, ranges, labels, gt_dir if gt_dir.is_dir() else None))
    return OfficialLayout(root, video_folders(root / "Train", "Train"), test)


def video_folders(split_dir: Path, prefix: str) -> list[Path]:
    if not split_dir.is_dir():
        return []
    return sorted(p for p in split_dir.iterdir()
                  if p.is_dir() and re.fullmatch(rf"{prefix}\d+", p.name))


def parse_ucsd_gt(text: str) -> list[list[tuple[int, int]]]:
    """`TestVideoFile{end+1}.gt_frame = [5:90, 140:200];` lines -> per test video ranges."""
    entries: dict[int, list[tuple[int, int]]] = {}
    for index, body in _GT_ENTRY.findall(re.sub(r"%.*", "", text)):  # % starts a comment
        position = int(index) if index.strip().isdigit() else len(entries) + 1
        entries[position] = [(int(a), int(b)) for a, b in re.findall(r"(\d+)\s*:\s*(\d+)", body)]
    if not entries:
        raise VadError("no TestVideoFile{...}.gt_frame = [a:b]; entries in the UCSD "
                       "ground-truth file")
    return [entries[i] for i in sorted(entries)]


def read_mask_folder(folder: Path) -> np.ndarray:
    """(frames, H, W) uint8, 1 = anomalous pixel."""
    return np.stack([(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8)
                     for p in _mask_files(folder)])


def _mask_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES)


def check_structure(layout: OfficialLayout, subset: UcsdSubset) -> None:
    """Refuse anything but the expected subset: no checksum of the archive is published."""
    where = layout.root.name
    for split, found, expected in (("Train", len(layout.train), subset.train_videos),
                                   ("Test", len(layout.test), subset.test_videos)):
        if found != expected:
            raise VadError(f"{where}/{split}: {found} {split}NNN folders, expected {expected}")
    train_frames = sum(len(FolderSource(folder)) for folder in layout.train)
    test_frames = sum(len(video.labels) for video in layout.test)
    for split, found, expected in (("Train", train_frames, subset.train_frames),
                                   ("Test", test_frames, subset.test_frames)):
        if found != expected:
            raise VadError(f"{where}/{split}: {found:,} frames, expected {expected:,}")
    for video in layout.test:
        frames = len(video.labels)
        if any(not 1 <= start <= end <= frames for start, end in video.intervals):
            raise VadError(f"{where}/Test/{video.folder.name}: ground-truth intervals "
                           f"{video.intervals} outside its {frames} frames")
        if video.gt_dir is not None and len(_mask_files(video.gt_dir)) != frames:
            raise VadError(f"{where}/Test/{video.gt_dir.name}: {len(_mask_files(video.gt_dir))} "
                           f"masks for {frames} frames")


def fetch_ucsd(subset: UcsdSubset, target: Path, cache_dir: Path, url: str,
               force: bool = False, progress: bool = True) -> dict:
    """Download (once, resumably) the archive into `cache_dir`, check it and convert `subset`
    into `target`; returns its meta.json. A target already converted is kept unless `force`."""
    target = Path(target).expanduser()
    meta = converted_meta(target)
    if meta is not None and not force:
        return meta
    if meta is None and target.exists() and not _is_empty_dir(target):
        raise VadError(f"{target}: exists and is not a converted dataset (no meta.json with "
                       "archive_sha256); choose another --to")
    archive = download(url, cached_path(url, cache_dir), progress)
    sha256 = file_sha256(archive)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=archive.parent) as scratch:
        root = _extract_subset(archive, subset.folder, Path(scratch), progress)
        try:
            layout = read_official_layout(root)
            check_structure(layout, subset)
        except VadError as exc:
            reason = str(exc).replace(f"{scratch}/", "")
            raise VadError(f"{archive}: not the official UCSD archive ({reason}); delete it to "
                           "download again") from None
        return _convert_atomically(layout, target, {"archive_sha256": sha256, "source_url": url},
                                   progress)


def converted_meta(target: Path) -> dict | None:
    """The meta.json of a folder this module converted (it is written last), else None."""
    try:
        meta = json.loads((target / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "archive_sha256" in meta else None


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _extract_subset(archive: Path, folder: str, dest: Path, progress: bool) -> Path:
    """Extract `folder` (e.g. UCSDped2) only; tarfile's "data" filter refuses members that
    would land outside `dest` (absolute paths, `..`, links out, devices)."""
    def keep(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        parts = PurePosixPath(member.name).parts
        if folder not in parts[:2] or _MAC_METADATA.fullmatch(parts[-1]):
            return None
        return tarfile.data_filter(member, path)

    try:
        with tarfile.open(archive, "r:gz") as tar, \
                tqdm(desc=f"extracting {folder}", unit=" files", disable=not progress) as bar:
            tar.extractall(dest, members=_counted(tar, bar), filter=keep)
    except tarfile.FilterError as exc:
        raise VadError(f"{archive}: unsafe archive member ({exc})") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        reason = " ".join(str(exc).split())
        raise VadError(f"{archive}: not a readable tar.gz archive ({reason}); delete it to "
                       "download again") from None
    roots = [p for p in (dest / folder, *dest.glob(f"*/{folder}")) if p.is_dir()]
    if not roots:
        raise VadError(f"{archive}: no {folder}/ folder in the archive; delete it to download "
                       "again")
    return roots[0]


def _counted(members: Iterable[tarfile.TarInfo], bar: tqdm) -> Iterator[tarfile.TarInfo]:
    for member in members:
        bar.update()
        yield member


def _convert_atomically(layout: OfficialLayout, target: Path, provenance: dict,
                        progress: bool) -> dict:
    """Write into a temporary sibling of `target`, then rename: no half-converted target."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise VadError(f"{target}: cannot create the dataset folder ({exc.strerror})") from None
    try:
        meta = convert(layout, staging, provenance, progress)
        if target.exists():  # an empty folder, or a previous conversion (force)
            old = staging.with_name(staging.name + ".old")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    except OSError as exc:
        raise VadError(f"{target}: conversion failed ({exc}); the archive stays in the cache")\
            from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def convert(layout: OfficialLayout, out: Path, provenance: dict, progress: bool = True) -> dict:
    """The official layout -> train/NN.mp4, test/NN.mp4, test_labels.csv, test_masks/NN.npz,
    meta.json (last, so that its presence means a complete conversion)."""
    for sub in ("train", "test", "test_masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    meta: dict = {"fps": FPS, "test": {}, "train": {}}
    repaired: dict[str, list[int]] = {}
    total = sum(len(FolderSource(f)) for f in layout.train) + sum(len(v.labels)
                                                                  for v in layout.test)
    rows = []
    with tqdm(total=total, desc=f"converting {layout.root.name}", unit="frame",
              disable=not progress) as bar:
        for folder in layout.train:
            name = _video_name(folder)
            frames, bad = _encode_folder(folder, out / "train" / f"{name}.mp4", bar)
            meta["train"][name] = {"frames": frames}
            if bad:
                repaired[f"train/{name}"] = bad
        for video in layout.test:
            name = _video_name(video.folder)
            frames, bad = _encode_folder(video.folder, out / "test" / f"{name}.mp4", bar)
            meta["test"][name] = {"frames": frames, "anomalous_intervals_1based":
                                  [list(interval) for interval in video.intervals]}
            if bad:
                repaired[f"test/{name}"] = bad
            rows += [(name, frame, int(label)) for frame, label in enumerate(video.labels)]
            if video.gt_dir is not None:
                np.savez_compressed(out / "test_masks" / f"{name}.npz",
                                    masks=read_mask_folder(video.gt_dir))
    with (out / "test_labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)  # \r\n rows, as in ../shared/data/ped2
        writer.writerow(("video", "frame", "label"))
        writer.writerows(rows)
    meta.update(provenance)
    if repaired:  # 0-based frames that could not be decoded, replaced by the previous frame
        meta["repaired_frames"] = repaired
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _video_name(folder: Path) -> str:
    """Test012 -> 12, as in the shared layout."""
    return f"{int(re.sub(r'[^0-9]', '', folder.name)):02d}"


def _encode_folder(folder: Path, path: Path, bar: tqdm) -> tuple[int, list[int]]:
    """One mp4 frame per image; an unreadable image repeats the previous frame, so frame
    indices stay aligned with the ground truth (the archive has at least one broken TIFF)."""
    repaired: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        previous = None
        for index, file in enumerate(FolderSource(folder).files):
            image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
            if image is None:
                if previous is None:
                    raise VadError(f"{file}: unreadable first frame")
                log.warning("%s: unreadable, replaced by the previous frame", file)
                repaired.append(index)
                image = previous
            previous = image
            bar.update()
            yield image

    return write_h264(path, frames()), repaired


def write_h264(path: Path, frames: Iterable[np.ndarray], fps: int = FPS, crf: int = CRF) -> int:
    """Gray (H, W) or BGR (H, W, 3) uint8 frames -> H.264 yuv420p mp4; returns the frame count."""
    import av  # PyAV is imported where it is used, as in streams.sources

    count = 0
    try:
        with av.open(str(path), "w") as container:
            stream = None
            for image in frames:
                if stream is None:
                    stream = _h264_stream(container, path, image.shape[:2], fps, crf)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image),
                                                   format="gray" if image.ndim == 2 else "bgr24")
                container.mux(stream.encode(frame))
                count += 1
            if stream is not None:
                container.mux(stream.encode(None))
    except av.error.FFmpegError as exc:
        raise VadError(f"{path}: cannot encode ({exc})") from None
    return count


def _h264_stream(container, path: Path, size: tuple[int, int], fps: int, crf: int):
    height, width = size
    if height % 2 or width % 2:
        raise VadError(f"{path}: {width}x{height} frames: yuv420p needs even sizes")
    stream = container.add_stream("libx264", rate=fps)
    stream.height, stream.width = height, width
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf)}
    return stream
