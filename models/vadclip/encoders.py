"""Frozen frame encoders and the snippet embeddings VadCLIP reads.

A snippet is `snippet` consecutive frames (16, as upstream); its embedding is the mean of the
embeddings of `frames_per_snippet` of its frames, evenly spaced from its first (all 16 by
default). Upstream does not say how its released features were made (one embedding per 16
frames, ten crops per video); the mean over every frame of the snippet is what its users
found to match their row counts. The last, shorter snippet of a video is the mean of the
frames it has, so a video of N frames has ceil(N / snippet) rows.

Encoders:
* `clip:ID_OR_DIR`: a transformers `CLIPModel` from a local directory or the local Hugging
  Face cache (never downloaded); frames are converted to RGB, resized so the shorter side is
  the processor's `shortest_edge` (bicubic, antialiased, in torch so that it batches on the
  GPU), centre-cropped and normalised with the processor's mean and std; the embedding is
  the projected image embedding (`visual_projection` of the pooled output), not normalised.
* `motion:CHECKPOINT_DIR`: not CLIP. The committed motion scorer's per-cell motion branch
  (speed x direction flow histogram plus the flow-masked frame's gradient histogram, see
  models/motion.py), pooled over the cells by mean and by max into one vector per frame; a
  stream's first frame is compared with itself (no motion).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.scoring import progress_frames
from streams.sources import Source
from streams.windows import preprocess
from vad.config.scorers import SnippetEncoding
from vad.errors import VadError

# OpenAI CLIP's normalisation, for a CLIP directory without a preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FrameStream(ABC):
    """One video's frames in order, preprocessed to the encoder's input (`preprocess`)."""

    @abstractmethod
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W[, 3]) float frames in [0, 1] -> (N, dim) float32 embeddings."""


class FrameEncoder(ABC):
    dim: int
    size: tuple[int, int] | None  # (height, width) frames are resized to; None: as they come
    grayscale: bool

    @abstractmethod
    def stream(self) -> FrameStream: ...


@dataclass(frozen=True)
class ClipPixels:
    """The image processor's resize, crop and normalisation."""

    shortest_edge: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@lru_cache(maxsize=2)
def load_clip(source: str, device: str):
    """(CLIPModel, ClipPixels) from a directory or the local Hugging Face cache, frozen."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import CLIPModel
    from transformers.utils import cached_file

    try:
        model = CLIPModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise VadError(f"clip:{source}: no CLIP model in that directory or in the local Hugging "
                       f"Face cache, and nothing is downloaded ({str(exc).splitlines()[0]})"
                       ) from None
    model = model.to(device).eval().requires_grad_(False)
    side = model.config.vision_config.image_size
    settings = cached_file(source, "preprocessor_config.json", local_files_only=True,
                           _raise_exceptions_for_missing_entries=False)
    processor = json.loads(Path(settings).read_text()) if settings else {}
    size, crop = processor.get("size", {}), processor.get("crop_size", {})
    pixels = ClipPixels(
        int(size.get("shortest_edge", side) if isinstance(size, dict) else size),
        ((int(crop.get("height", side)), int(crop.get("width", side))) if isinstance(crop, dict)
         else (int(crop), int(crop))),
        tuple(processor.get("image_mean", CLIP_MEAN)), tuple(processor.get("image_std", CLIP_STD)))
    return model, pixels


def load_clip_tokenizer(source: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise VadError(f"clip:{source}: no tokenizer for the text branch "
                       f"({str(exc).splitlines()[0]})") from None


class ClipFrameEncoder(FrameEncoder, FrameStream):
    size, grayscale = None, False

    def __init__(self, source: str, device: torch.device, batch: int):
        self.source, self.device, self.batch = source, device, batch
        self.model, self.pixels = load_clip(source, str(device))
        self.dim = self.model.visual_projection.out_features

    def stream(self) -> FrameStream:
        return self  # each frame is embedded on its own

    def pixel_values(self, frames: np.ndarray) -> torch.Tensor:
        p = self.pixels
        x = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).to(self.device)  # RGB
        x = x.permute(0, 3, 1, 2)
        h, w = x.shape[2:]
        scale = p.shortest_edge / min(h, w)
        size = (max(p.crop[0], round(h * scale)), max(p.crop[1], round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True,
                          align_corners=False).clamp(0.0, 1.0)
        top, left = (x.shape[2] - p.crop[0]) // 2, (x.shape[3] - p.crop[1]) // 2
        x = x[:, :, top:top + p.crop[0], left:left + p.crop[1]]
        mean = torch.tensor(p.mean, device=self.device)[:, None, None]
        std = torch.tensor(p.std, device=self.device)[:, None, None]
        return (x - mean) / std

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(frames), self.batch):
            pixels = self.pixel_values(frames[start:start + self.batch])
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            out.append(self.model.visual_projection(pooled).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class MotionFrameEncoder(FrameEncoder):
    grayscale = True

    def __init__(self, checkpoint: str):
        from models.base import load_scorer

        self.scorer = load_scorer(checkpoint, device="cpu")
        if self.scorer.name != "motion":
            raise VadError(f"motion:{checkpoint}: holds a {self.scorer.name!r} checkpoint")
        config = self.scorer.config
        self.size = tuple(config.size)
        self.dim = 2 * (config.orientations * (len(config.speed_edges) + 1)
                        + config.gradient_bins)

    def stream(self) -> FrameStream:
        return _MotionStream(self.scorer)


class _MotionStream(FrameStream):
    def __init__(self, scorer):
        self.scorer = scorer
        self.previous: np.ndarray | None = None

    def encode(self, frames: np.ndarray) -> np.ndarray:
        if not len(frames):
            return np.zeros((0, 0), np.float32)
        first = frames[:1] if self.previous is None else self.previous[None]
        cells = self.scorer.features(np.concatenate([first, frames]))[0].motion
        self.previous = frames[-1]
        flat = cells.reshape(len(cells), -1, cells.shape[-1])
        return np.concatenate([flat.mean(1), flat.max(1)], axis=1).astype(np.float32)


def open_frame_encoder(spec: str, device: torch.device, batch: int) -> FrameEncoder:
    kind, _, source = spec.partition(":")
    if kind == "clip":
        return ClipFrameEncoder(source, device, batch)
    if kind == "motion":
        return MotionFrameEncoder(source)
    raise VadError(f"unknown frame encoder {spec!r}: expected clip:ID_OR_DIR or motion:DIR")


def encoder_input(spec: str) -> tuple[tuple[int, int] | None, bool]:
    """(size, grayscale) of an encoder's frames, without loading its weights."""
    kind, _, source = spec.partition(":")
    if kind == "motion":
        from models.base import read_checkpoint_meta
        from vad.config.scorers import MotionParams

        size = MotionParams.model_validate(
            read_checkpoint_meta(Path(source)).get("config", {})).size
        return tuple(size), True
    return None, False


class SnippetPooler:
    """Snippet embeddings of one frame stream, frames counted in arrival order."""

    def __init__(self, stream: FrameStream, encoding: SnippetEncoding):
        self.stream, self.snippet = stream, encoding.snippet
        self.sampled = set(np.linspace(0, encoding.snippet, encoding.frames_per_snippet,
                                       endpoint=False).astype(int).tolist())
        self.position = 0  # frames of the current snippet seen so far
        self.total: np.ndarray | None = None
        self.count = 0

    def push(self, frames: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Frames in -> (snippets completed, (N, D) each frame's partial snippet mean up to and
        including it, (N,) how many of those snippets completed before each frame)."""
        offsets = (self.position + np.arange(len(frames))) % self.snippet
        chosen = np.array([o in self.sampled for o in offsets], bool)
        embedded = iter(self.stream.encode(frames[chosen]) if chosen.any() else ())
        completed, partial, before = [], [], []
        for take in chosen:
            if take:
                vector = next(embedded)
                self.total = vector.astype(np.float64) + (0 if self.total is None else self.total)
                self.count += 1
            partial.append(self.total / self.count)
            before.append(len(completed))
            self.position += 1
            if self.position == self.snippet:
                completed.append((self.total / self.count).astype(np.float32))
                self.position, self.total, self.count = 0, None, 0
        return completed, np.asarray(partial, np.float32), np.asarray(before, np.int64)

    def finish(self) -> np.ndarray | None:
        """The last, shorter snippet's embedding, if the stream stopped inside one."""
        if not self.count:
            return None
        last = (self.total / self.count).astype(np.float32)
        self.position, self.total, self.count = 0, None, 0
        return last


def source_features(encoder: FrameEncoder, source: Source, encoding: SnippetEncoding,
                    progress: bool = False) -> tuple[np.ndarray, int]:
    """(snippets, dim) embeddings of a whole video, and its frame count."""
    pooler = SnippetPooler(encoder.stream(), encoding)
    rows: list[np.ndarray] = []
    frames = 0
    for chunk in _chunks(progress_frames(source, f"features {source.camera_id}", progress),
                         encoder, encoding.encoder_batch):
        rows += pooler.push(chunk)[0]
        frames += len(chunk)
    last = pooler.finish()
    if last is not None:
        rows.append(last)
    if not rows:
        raise VadError(f"{source.camera_id}: no frames to embed")
    return np.stack(rows), frames


def _chunks(frames: Iterable, encoder: FrameEncoder, size: int) -> Iterable[np.ndarray]:
    batch = []
    for frame in frames:
        batch.append(preprocess(frame.image, encoder.size, encoder.grayscale))
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)

