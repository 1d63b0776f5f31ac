"""`vad vane build`: a VANE-format question set (folder form) from a labelled dataset and a
person's annotations of its anomalous intervals.

The annotations file (YAML) names the subset and category, a question stem per aspect, the
scene's vocabulary per aspect (the distractors are drawn from it) and, per video, the
anomalous intervals (1-based, inclusive, as the official UCSD ground truth), each with its
subject and the correct answer of each question asked about it. Vocabulary entries that are
also true of an interval are listed under `also_true` and never offered as distractors.

Each interval becomes one clip, `video_<N>_subset_<K>` (the official scripts' naming), of
`vane.build.frames` frames sampled uniformly over it by random access, saved as
`frame_<index>.jpg`; its questions go to `<clip>_qa.txt` beside the clip folder. The correct
letters are balanced over the whole set (a seeded shuffle of A, B, C, D repeated) and the
distractors drawn with the same seed, so the set is reproducible.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from vad.config import Section, validated
from vad.config.vane import BuildConfig
from vad.errors import VadError

LETTERS = "ABCD"


class Interval(Section):
    """One annotated anomalous interval: one clip."""

    frames: tuple[int, int] = Field(description="first and last frame, 1-based, inclusive")
    subject: str = Field(description="what the questions call the anomalous thing")
    questions: dict[str, str] = Field(min_length=1, description=(
        "aspect -> correct answer, in the order asked"))
    also_true: dict[str, list[str]] = Field(default_factory=dict, description=(
        "aspect -> vocabulary entries also true of this interval (never distractors)"))
    note: str = Field("", description="what the annotator saw (not used in questions)")

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if not 1 <= self.frames[0] <= self.frames[1]:
            raise ValueError(f"frames {list(self.frames)}: expected [first, last], 1-based")
        return self


class Annotations(Section):
    """A question set's annotations: see the module docstring."""

    subset: str = Field(description="subset name, e.g. UCSD-Ped2")
    category: str = Field("Real World", description="Real World or AI-Generated")
    stems: dict[str, str] = Field(description="aspect -> question stem ({subject} allowed)")
    vocabulary: dict[str, list[str]] = Field(description="aspect -> the scene's answers")
    videos: dict[str, list[Interval]] = Field(min_length=1, description=(
        "video name (as in the dataset) -> its anomalous intervals"))

    @model_validator(mode="after")
    def _complete(self) -> Annotations:
        for video, intervals in self.videos.items():
            for interval in intervals:
                for aspect, answer in interval.questions.items():
                    if aspect not in self.stems:
                        raise ValueError(f"videos.{video}: no stem for aspect {aspect!r}")
                    pool = distractor_pool(self, interval, aspect)
                    if len(pool) < len(LETTERS) - 1:
                        raise ValueError(f"videos.{video}: aspect {aspect!r} has {len(pool)} "
                                         f"possible distractors for {answer!r}; the vocabulary "
                                         f"needs at least {len(LETTERS) - 1}")
        return self


def distractor_pool(annotations: Annotations, interval: Interval, aspect: str) -> list[str]:
    answer = interval.questions[aspect]
    excluded = {_fold(answer), *(_fold(v) for v in interval.also_true.get(aspect, []))}
    return [v for v in annotations.vocabulary.get(aspect, []) if _fold(v) not in excluded]


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def load_annotations(path: str | Path) -> Annotations:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VadError(f"{path}: cannot read annotations ({exc.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise VadError(f"{path}: not a YAML annotations file "
                       f"({str(exc).splitlines()[0]})") from None
    return validated(Annotations, data, str(path))


@dataclass(frozen=True)
class BuiltQuestion:
    text: str
    answer: str
    kind: str


@dataclass(frozen=True)
class Clip:
    video: str
    name: str
    frames: tuple[int, int]  # 0-based, inclusive
    questions: tuple[BuiltQuestion, ...]


def clip_name(video: str, number: int) -> str:
    digits = re.sub(r"\D", "", video)
    return f"video_{int(digits) if digits else video}_subset_{number}"


def plan(annotations: Annotations, seed: int) -> list[Clip]:
    """Every clip with its questions: distractors and answer letters drawn with `seed`."""
    rng = np.random.default_rng(seed)
    intervals = [(video, k, interval) for video in sorted(annotations.videos)
                 for k, interval in enumerate(annotations.videos[video], 1)]
    total = sum(len(interval.questions) for _, _, interval in intervals)
    letters = list(rng.permutation(list(LETTERS * math.ceil(total / len(LETTERS)))[:total]))
    clips = []
    for video, k, interval in intervals:
        built = []
        for aspect, answer in interval.questions.items():
            pool = distractor_pool(annotations, interval, aspect)
            distractors = [pool[i] for i in rng.choice(len(pool), len(LETTERS) - 1,
                                                       replace=False)]
            letter = str(letters.pop(0))
            distractors.insert(LETTERS.index(letter), answer)
            stem = annotations.stems[aspect].format(subject=interval.subject)
            options = " ".join(f"{lt}) {text}" for lt, text in zip(LETTERS, distractors))
            built.append(BuiltQuestion(f"{stem} {options}", letter, aspect))
        first, last = interval.frames
        clips.append(Clip(video, clip_name(video, k), (first - 1, last - 1), tuple(built)))
    return clips


def qa_text(clip: Clip) -> str:
    """The `_qa.txt` contents: a Python-literal list, one question per line."""
    entries = [repr({"Q": q.text, "A": q.answer, "type": q.kind}) for q in clip.questions]
    return "[\n" + ",\n".join(entries) + "\n]\n"


def sample_indices(first: int, last: int, count: int) -> list[int]:
    return sorted(set(np.linspace(first, last, count).round().astype(int).tolist()))


def build(dataset: str | Path, annotations_path: str | Path, out: str | Path,
          config: BuildConfig) -> list[tuple[Clip, Path, float]]:
    """Write the question set; (clip, its folder, share of its frames labelled anomalous)."""
    import cv2

    from vad.data.benchmarks import load_benchmark

    annotations = load_annotations(annotations_path)
    benchmark = load_benchmark(dataset)
    videos = {video.name: video for video in benchmark.test}
    unknown = sorted(set(annotations.videos) - set(videos))
    if unknown:
        raise VadError(f"{annotations_path}: videos {', '.join(unknown)} are not in "
                       f"{benchmark.root} (it has {', '.join(sorted(videos))})")
    root = Path(out) / "VQA_Data" / annotations.category / annotations.subset
    written = []
    for clip in plan(annotations, config.seed):
        video = videos[clip.video]
        first, last = clip.frames
        if last >= len(video.labels):
            raise VadError(f"{annotations_path}: video {clip.video} interval "
                           f"[{first + 1}, {last + 1}] ends after its {len(video.labels)} frames")
        indices = sample_indices(first, last, config.frames)
        folder = root / clip.name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("frame_*.jpg"):
            stale.unlink()
        for index, image in zip(indices, _read(video.open(), indices)):
            cv2.imwrite(str(folder / f"frame_{index}.jpg"), image,
                        [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        (root / f"{clip.name}_qa.txt").write_text(qa_text(clip), encoding="utf-8")
        written.append((clip, folder, float(video.labels[first:last + 1].mean())))
    return written


def _read(source, indices: list[int]) -> np.ndarray | list[np.ndarray]:
    """Frames by index: decord random access for a video file, the image files of a folder."""
    import cv2

    from streams.sources import FolderSource, read_frames

    if isinstance(source, FolderSource):
        return [cv2.imread(str(source.files[i]), cv2.IMREAD_COLOR) for i in indices]
    return read_frames(source.path, indices)
