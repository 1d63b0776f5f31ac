"""VANE-Bench questions in their two published forms, detected automatically.

- Folder form: `VQA_Data/{Real World,AI-Generated}/<subset>/<clip>/frame_N.jpg` with
  `<clip>_qa.txt` beside the clip folder (or inside it), a Python-literal list
  `[{"Q": "question ... A) ... B) ... C) ... D) ...", "A": "B"}, ...]`, read with
  `ast.literal_eval` (never `eval`). Frames are ordered by the number in their names.
- Hugging Face parquet form: one row per question with `frame_0 ... frame_9` (images),
  `category`, `sub_category` (the subset), `video_folder` (the clip), `question`, `answer`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vad.errors import VadError
from vad.evidence import decode_image, encode_jpeg

QA_SUFFIX = "_qa.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class ClipFrame:
    """One frame of a clip: its number (from the file name, else its position) and where
    its encoded image is (a file, or the bytes of a parquet cell)."""

    index: int
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    def encoded(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise VadError(f"{self.path}: cannot read frame ({exc.strerror})") from None

    def image(self) -> np.ndarray:
        """BGR uint8 (H, W, 3)."""
        image = decode_image(self.encoded(), cv2.IMREAD_COLOR)
        if image is None:
            raise VadError(f"{self.path or 'parquet frame'} {self.index}: not a readable image")
        return image

    def jpeg(self) -> bytes:
        """The frame as JPEG: the stored bytes when they are JPEG (as the paper sends them)."""
        data = self.encoded()
        if data[:2] == _JPEG_MAGIC:
            return data
        return encode_jpeg(self.image(), quality=95)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question about one clip."""

    subset: str
    category: str
    clip: str
    number: int  # position of the question in its clip's list (0-based)
    text: str  # verbatim, options included
    answer: str  # the correct letter as stored (the official scorer strips a trailing ")")
    frames: tuple[ClipFrame, ...]
    kind: str | None = None  # question type, when the file names one ("type" key)

    @property
    def id(self) -> str:
        return f"{self.subset}/{self.clip}#{self.number}"

    def options(self) -> dict[str, str]:
        return split_options(self.text)[1]

    def stem(self) -> str:
        return split_options(self.text)[0]


_OPTION = re.compile(r"(?<!\S)([A-H])\)\s*")  # "A) ..." after a space, not "(A)"


def split_options(text: str) -> tuple[str, dict[str, str]]:
    """(stem, {letter: option}) of `question A) ... B) ... C) ... D) ...`: markers are taken
    in letter order from A, so an "A)" inside the stem's wording is not mistaken for one."""
    markers, start, letter = [], 0, "A"
    while (match := _find_marker(text, letter, start)) is not None:
        markers.append(match)
        start, letter = match.end(), chr(ord(letter) + 1)
    if not markers:
        return text.strip(), {}
    options = {}
    for i, match in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        options[match.group(1)] = text[match.end():end].strip().rstrip(",;").strip()
    return text[:markers[0].start()].strip(), options


def _find_marker(text: str, letter: str, start: int) -> re.Match | None:
    for match in _OPTION.finditer(text, start):
        if match.group(1) == letter:
            return match
    return None


def subset_key(name: str) -> str:
    """Subset names compare without case and punctuation: "UCSD-Ped2" == "ucsd_ped2"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_questions(data: str | Path, subsets: Sequence[str] = ()) -> list[Question]:
    """Every question under `data` (either form), optionally only of the named subsets."""
    path = Path(data)
    if not path.exists():
        raise VadError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix == ".parquet":
        questions = read_parquet([path])
    elif path.is_dir() and next(path.rglob(f"*{QA_SUFFIX}"), None) is not None:
        questions = read_folder(path)
    elif path.is_dir() and (shards := sorted(path.rglob("*.parquet"))):
        questions = read_parquet(shards)
    else:
        raise VadError(f"{path}: neither VANE-Bench form (no *{QA_SUFFIX} files, no .parquet)")
    if subsets:
        wanted = {subset_key(s) for s in subsets}
        found = {subset_key(q.subset) for q in questions}
        missing = sorted(s for s in subsets if subset_key(s) not in found)
        if missing:
            names = sorted({q.subset for q in questions})
            raise VadError(f"--subset {', '.join(missing)}: not in {path} "
                           f"(it has {', '.join(names)})")
        questions = [q for q in questions if subset_key(q.subset) in wanted]
    if not questions:
        raise VadError(f"{path}: no questions")
    return questions


# ---------------------------------------------------------------------------- folder form

def read_folder(root: Path) -> list[Question]:
    questions = []
    for qa_file in sorted(root.rglob(f"*{QA_SUFFIX}"), key=_natural_key):
        clip = qa_file.name[:-len(QA_SUFFIX)]
        folder = qa_file.parent if qa_file.parent.name == clip else qa_file.parent / clip
        if not folder.is_dir():
            raise VadError(f"{qa_file}: no clip folder {clip!r} beside or around it")
        frames = _folder_frames(folder)
        subset_dir = folder.parent  # .../<category>/<subset>/<clip>
        for number, (text, answer, kind) in enumerate(parse_qa_file(qa_file)):
            questions.append(Question(subset_dir.name, subset_dir.parent.name, clip, number,
                                      text, answer, frames, kind))
    return questions


def parse_qa_file(path: Path) -> list[tuple[str, str, str | None]]:
    """(question, answer, type) of each entry of a `_qa.txt` file."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise VadError(f"{path}: not a UTF-8 text file") from None
    try:
        entries = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        reason = type(exc).__name__ if not str(exc) else str(exc).splitlines()[0]
        raise VadError(f"{path}: not a Python literal list of questions ({reason})") from None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise VadError(f"{path}: expected a non-empty list of {{'Q': ..., 'A': ...}} entries")
    out = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("Q"), str)
                and isinstance(entry.get("A"), str) and entry["A"].strip()):
            raise VadError(f"{path}: entry {i} needs string 'Q' and 'A' fields")
        kind = entry.get("type")
        out.append((entry["Q"], entry["A"].strip(), kind if isinstance(kind, str) else None))
    return out


def _folder_frames(folder: Path) -> tuple[ClipFrame, ...]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise VadError(f"{folder}: no frames (frame_N.jpg)")
    numbered = [(_frame_number(p, i), p) for i, p in enumerate(sorted(files, key=_natural_key))]
    return tuple(ClipFrame(n, p) for n, p in sorted(numbered))


def _frame_number(path: Path, position: int) -> int:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else position


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


# ---------------------------------------------------------------------------- parquet form

PARQUET_COLUMNS = ("category", "sub_category", "video_folder", "question", "answer")


def read_parquet(shards: Sequence[Path]) -> list[Question]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    questions, numbers = [], {}
    for shard in shards:
        try:
            table = pq.read_table(shard)
        except (pa.ArrowException, OSError) as exc:
            raise VadError(f"{shard}: not a readable parquet file ({exc})") from None
        missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
        frame_columns = sorted((c for c in table.column_names if re.fullmatch(r"frame_\d+", c)),
                               key=lambda c: int(c.split("_")[1]))
        if missing or not frame_columns:
            raise VadError(f"{shard}: not the VANE-Bench parquet form (missing "
                           f"{', '.join(missing + ([] if frame_columns else ['frame_0...']))})")
        for row in table.to_pylist():
            frames = tuple(ClipFrame(int(c.split("_")[1]), data=_image_bytes(row[c], shard, c))
                           for c in frame_columns if row[c] is not None)
            subset, clip = str(row["sub_category"]), str(row["video_folder"])
            number = numbers[(subset, clip)] = numbers.get((subset, clip), -1) + 1
            answer = str(row["answer"] or "").strip()
            if not frames or not answer:
                raise VadError(f"{shard}: {subset}/{clip} question {number} has no "
                               f"{'frames' if not frames else 'answer'}")
            questions.append(Question(subset, str(row["category"] or ""), clip, number,
                                      str(row["question"]), answer, frames,
                                      row.get("type") if isinstance(row.get("type"), str)
                                      else None))
    return questions


def _image_bytes(cell, shard: Path, column: str) -> bytes:
    """An image cell: Hugging Face's {"bytes": ..., "path": ...} struct or raw bytes."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    if not isinstance(cell, bytes) or not cell:
        raise VadError(f"{shard}: column {column} holds no image bytes")
    return cell


def choose_frames(frames: Sequence[ClipFrame], count: int) -> list[ClipFrame]:
    """`count` frames spread uniformly over the clip (all of them when it has no more)."""
    if len(frames) <= count:
        return list(frames)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in picks]
