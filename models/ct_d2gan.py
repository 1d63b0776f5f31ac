"""CT-D2GAN: Convolutional Transformer based Dual Discriminator GAN (Feng et al., ACM MM 2021).

A generator predicts frame t+1 from the T frames before it: a convolutional encoder applied to
each past frame, a temporal self-attention module across the T feature maps, and a U-Net style
convolutional decoder. Two least-squares discriminators judge the prediction: an image
(patch) discriminator on the frame alone and a video discriminator (3D convolutions) on the
past frames followed by the prediction. Normal motion is predictable; anomalous objects and
motions are not, so the raw anomaly score of a frame grows with its prediction error (here
the upper quantile of the error relative to that of the frame's change, `relative_error`).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.base import InputSpec, LearningType, Scorer, register_scorer, resolve_device
from models.scoring import ScoringSession
from vad.config.scorers import CTD2GANParams
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.types import Clip, ScoreResult


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1),
                         nn.LeakyReLU(0.2, inplace=True))


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of frame positions 0..length-1, (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    encoding = torch.zeros(length, dim)
    encoding[:, 0::2] = torch.sin(position * rates)
    encoding[:, 1::2] = torch.cos(position * rates[: dim // 2])
    return encoding


class TemporalSelfAttention(nn.Module):
    """Multi-head self-attention between the T feature maps of one clip.

    Per head, convolutions give query, key and value maps; the attention weights between
    frames come from the globally average-pooled query and key maps plus a positional encoding
    of the frame position, and each frame's output is the weighted sum of the value maps.
    """

    def __init__(self, channels: int, heads: int, frames: int):
        super().__init__()
        self.heads = heads
        self.head_dim = channels // heads
        self.query = nn.Conv2d(channels, channels, 3, padding=1)
        self.key = nn.Conv2d(channels, channels, 3, padding=1)
        self.value = nn.Conv2d(channels, channels, 3, padding=1)
        self.merge = nn.Conv2d(channels, channels, 3, padding=1)
        self.register_buffer("position", positional_encoding(frames, self.head_dim),
                             persistent=False)

    def project(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-frame part, (N, C, h, w) -> pooled query and key (N, heads, d) and value maps.

        It depends on one frame only, so a scorer computes it once per frame, not once per
        window that frame falls in.
        """
        n = len(features)
        query = self.query(features).mean(dim=(2, 3)).reshape(n, self.heads, self.head_dim)
        key = self.key(features).mean(dim=(2, 3)).reshape(n, self.heads, self.head_dim)
        return query, key, self.value(features)

    def forward(self, features: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor) -> torch.Tensor:
        """Windows of projected frames (B, T, ...) -> attended features (B, T, C, h, w)."""
        b, t, c, h, w = features.shape
        query = query + self.position[:, None]
        key = key + self.position[:, None]
        value = value.reshape(b, t, self.heads, self.head_dim * h * w)
        logits = torch.einsum("bthd,bshd->bhts", query, key) / math.sqrt(self.head_dim)
        attended = torch.einsum("bhts,bshx->bthx", logits.softmax(dim=-1), value)
        attended = self.merge(attended.reshape(b * t, c, h, w))
        return features + attended.reshape(b, t, c, h, w)


def merge_frames(windows: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T*C, H, W) in channels-last memory, the convolutions' layout,
    with one copy (flattening first, then converting, copies twice, the second slowly)."""
    b, t, c, h, w = windows.shape
    return windows.permute(0, 3, 4, 1, 2).reshape(b, h, w, t * c).permute(0, 3, 1, 2)


class Generator(nn.Module):
    """(B, T, C, H, W) past frames in [0, 1] -> (B, C, H, W) predicted next frame.

    The encoder starts with a strided convolution and the decoder's last stage sees the raw
    past frames instead of full-resolution features: full-resolution convolutions dominate
    the cost on a CPU. The decoder predicts the change from the last frame, so an untrained
    generator starts as "nothing moves" and training spends its iterations on the motion.
    """

    def __init__(self, config: CTD2GANParams):
        super().__init__()
        c, t, w = config.channels, config.frames, config.width
        self.encoder = nn.ModuleList([
            nn.Sequential(_conv(c, w, 2), _conv(w, w)),
            nn.Sequential(_conv(w, 2 * w, 2), _conv(2 * w, 2 * w)),
            nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w)),
        ])
        self.attention = TemporalSelfAttention(4 * w, config.heads, t)
        self.fuse = _conv(t * 4 * w, 4 * w)
        # Skips: the T frames' encoder features at each finer scale, mixed by a 1x1 conv.
        self.skips = nn.ModuleList([nn.Conv2d(t * ch, ch, 1) for ch in (w, 2 * w)])
        self.decoder = nn.ModuleList([_conv(6 * w, 2 * w), _conv(3 * w, w), _conv(w + t * c, w)])
        self.head = nn.Conv2d(w, c, 3, padding=1)

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Per-frame features, (N, C, H, W) -> [frames, scale 1, scale 2, scale 3, q, k, v]."""
        encoded = [frames]
        for stage in self.encoder:
            encoded.append(stage(encoded[-1]))
        return encoded + list(self.attention.project(encoded[-1]))

    def decode(self, windows: list[torch.Tensor]) -> torch.Tensor:
        """`encode` outputs gathered into windows (B, T, ...) -> (B, C, H, W) prediction."""
        frames, *scales, bottleneck, query, key, value = windows
        x = self.fuse(merge_frames(self.attention(bottleneck, query, key, value)))
        skips = [skip(merge_frames(feature)) for skip, feature in zip(self.skips, scales)]
        for block, skip in zip(self.decoder, skips[::-1] + [merge_frames(frames)]):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            # One dtype and layout for the concatenation: mixed, it would be promoted to
            # float32, cast back and re-laid out for the convolution (a fifth of the scoring
            # time at 128x192).
            x = block(torch.cat([x, skip.to(x.dtype, memory_format=torch.channels_last)], 1))
        return frames[:, -1] + self.head(x).float()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        return self.decode([e.unflatten(0, (b, t)) for e in self.encode(frames.flatten(0, 1))])


class ImageDiscriminator(nn.Module):
    """PatchGAN: (B, C, H, W) -> (B, 1, H/8, W/8) realness per patch."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * width, 1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class VideoDiscriminator(nn.Module):
    """3D convolutions: (B, T+1, C, H, W) clip -> patch realness over space and time."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(channels, width, 3, (1, 2, 2), 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(width, 2 * width, 3, (1, 2, 2), 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(2 * width, 4 * width, 3, (2, 2, 2), 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(4 * width, 1, 3, 1, 1))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        # float32 even under bfloat16 autocast: oneDNN's bfloat16 Conv3d backward corrupts
        # memory at some sizes (torch 2.13 CPU, e.g. 128x192 clips).
        with torch.autocast(clip.device.type, enabled=False):
            return self.net(clip.float().transpose(1, 2))


def gradient_difference_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |(|dx pred| - |dx target|)| + same along y (Mathieu et al. 2016, alpha = 1)."""
    def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()

    (px, py), (tx, ty) = grads(prediction), grads(target)
    return (px - tx).abs().mean() + (py - ty).abs().mean()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware computes it natively (`auto`), else float32."""
    if precision == "auto":
        native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                  else torch.backends.mkldnn.is_available()
                  and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        precision = "bfloat16" if native else "float32"
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def psnr(errors: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR (dB, peak 1) from (N, H, W) squared errors."""
    return 10.0 * torch.log10(1.0 / errors.flatten(1).mean(1).clamp_min(1e-10))


def upper_quantile(maps: torch.Tensor, quantile: float) -> torch.Tensor:
    """Per-map value exceeded by a (1 - quantile) share of the pixels, (N, H, W) -> (N,)."""
    flat = maps.flatten(1)
    top = max(1, math.ceil((1.0 - quantile) * flat.shape[1]))
    return flat.topk(top, dim=1, sorted=False).values.min(dim=1).values


def relative_error(errors: torch.Tensor, change: torch.Tensor, quantile: float,
                   floor: float) -> torch.Tensor:
    """The raw anomaly score: log of the upper-quantile prediction error over the same
    quantile of the frame's change (the error of predicting "nothing moves", at least
    `floor`). The quantile keeps a small badly predicted object from being averaged away
    (whole-frame PSNR does); dividing by the change removes most of the level that the
    amount of normal motion (a crowd) sets, which shifts a camera's scores between scenes."""
    return (torch.log(upper_quantile(errors, quantile).clamp_min(1e-10))
            - torch.log(upper_quantile(change, quantile) + floor))


@register_scorer("ct-d2gan")
class CTD2GANScorer(Scorer):
    """Frame-prediction anomaly scorer; raw score = `relative_error` of the prediction."""

    Config = CTD2GANParams
    learning_type = LearningType.ONE_CLASS

    def __init__(self, config: CTD2GANParams | None = None, device: str = "auto"):
        super().__init__(config, device)
        self.torch_device = torch.device(resolve_device(device))
        self.dtype = autocast_dtype(self.config.precision, self.torch_device)
        self.generator = self.new_generator().eval()
        # Discriminators and optimiser state, kept in checkpoints so training can resume.
        self.training_state: dict[str, np.ndarray] = {}

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.config.size, grayscale=self.config.grayscale,
                         context=self.config.frames)

    def session(self, camera_id: str, batch: int) -> ScoringSession:
        return _PredictionSession(self, camera_id, batch)

    def to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W[, 3]) float frames in [0, 1] -> (N, C, H, W) tensor on the device."""
        frames = frames[:, None] if frames.ndim == 3 else frames.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(
            self.torch_device)

    def new_generator(self) -> Generator:
        """Freshly initialised, on the device; channels-last, which oneDNN convolves ~20%
        faster on a CPU."""
        return Generator(self.config).to(self.torch_device, memory_format=torch.channels_last)

    def autocast(self) -> AbstractContextManager:
        """The configured arithmetic for the networks (training and scoring)."""
        return torch.autocast(self.torch_device.type, dtype=self.dtype,
                              enabled=self.dtype != torch.float32)

    @torch.no_grad()
    def decode_windows(self, encoded: list[torch.Tensor]) -> torch.Tensor:
        """Encodings of N frames -> (N - T + 1, C, H, W) predictions of the frame after each
        window of T consecutive frames, batched; each frame's encoding serves T windows."""
        t, n = self.config.frames, len(encoded[0])
        windows = torch.arange(n - t + 1, device=encoded[0].device)[:, None] + torch.arange(
            t, device=encoded[0].device)
        return torch.cat([self.generator.decode([e[batch] for e in encoded])
                          for batch in windows.split(self.config.inference_batch)])

    def score(self, clip: Clip) -> ScoreResult:
        return self.score_encoded(clip, None)

    def score_encoded(self, clip: Clip, cache: _EncodingCache | None) -> ScoreResult:
        """Scores of the clip's targets; `cache` holds encodings of frames seen before."""
        errors, change = self.prediction_errors(clip, cache)
        scores = relative_error(errors, change, self.config.score_quantile,
                                self.config.change_floor)
        return ScoreResult(clip.camera_id, clip.target_indices,
                           scores.double().cpu().numpy(), errors.cpu().numpy())

    @torch.no_grad()
    def prediction_errors(self, clip: Clip, cache: _EncodingCache | None = None,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel squared errors (N, H, W) of the predictions of the clip's N targets, and
        of predicting "nothing moves" (the squared change from each target's previous frame),
        both averaged over channels."""
        t = self.config.frames
        if clip.context < t:
            raise VadError(f"ct-d2gan: needs {t} frames of context, the clip has {clip.context}")
        expected = tuple(self.config.size)
        if clip.frames.shape[1:3] != expected or (clip.frames.ndim == 3) != self.config.grayscale:
            raise VadError(f"ct-d2gan: clip frames {clip.frames.shape[1:]} do not match the "
                           f"model input {expected} {'gray' if self.config.grayscale else 'BGR'}")
        frames = self.to_tensor(clip.frames[clip.context - t:])
        past, indices = frames[:-1], clip.indices[clip.context - t:-1]
        with self.autocast():
            encoded = (cache.encode(self.generator, past, indices) if cache is not None
                       else self.generator.encode(past))
            prediction = self.decode_windows(encoded).float().clamp(0.0, 1.0)
        targets = frames[t:]
        return ((prediction - targets).square().mean(1),
                (frames[t - 1:-1] - targets).square().mean(1))

    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        from models.ct_d2gan_train import train

        train(self, training.normal_sources(), progress)

    def tensors(self) -> dict[str, np.ndarray]:
        weights = {f"generator.{k}": v.detach().cpu().numpy()
                   for k, v in self.generator.state_dict().items()}
        return weights | self.training_state

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        prefix = "generator."
        weights = {k[len(prefix):]: torch.from_numpy(v.copy())
                   for k, v in tensors.items() if k.startswith(prefix)}
        try:
            self.generator.load_state_dict(weights)
        except RuntimeError as exc:
            raise VadError(f"ct-d2gan: checkpoint does not fit the config "
                           f"({str(exc).splitlines()[1].strip()})") from None
        self.training_state = {k: v for k, v in tensors.items() if not k.startswith(prefix)}


class _EncodingCache:
    """Encodings of a camera's most recent frames: consecutive clips overlap by their context,
    so the overlap is encoded once."""

    def __init__(self, keep: int):
        self.keep = keep
        self.indices = np.zeros(0, np.int64)
        self.encoded: list[torch.Tensor] = []

    def encode(self, generator: Generator, frames: torch.Tensor,
               indices: np.ndarray) -> list[torch.Tensor]:
        reuse = self._overlap(indices)
        fresh = generator.encode(frames[reuse:]) if reuse < len(frames) else None
        if reuse == 0:
            encoded = fresh
        else:
            kept = [e[len(self.indices) - reuse:] for e in self.encoded]
            encoded = kept if fresh is None else [torch.cat(p) for p in zip(kept, fresh)]
        self.indices = indices[-self.keep:]
        self.encoded = [e[-self.keep:] for e in encoded]
        return encoded

    def _overlap(self, indices: np.ndarray) -> int:
        """How many leading `indices` are the cached frames' last ones, in order."""
        for count in range(min(len(self.indices), len(indices)), 0, -1):
            if np.array_equal(self.indices[-count:], indices[:count]):
                return count
        return 0


class _PredictionSession(ScoringSession):
    def __init__(self, scorer: CTD2GANScorer, camera_id: str, batch: int):
        super().__init__(scorer, camera_id, batch)
        self.cache = _EncodingCache(scorer.config.frames)

    def score(self, clip: Clip) -> ScoreResult:
        return self.scorer.score_encoded(clip, self.cache)

    def state(self) -> dict:
        # numpy has no bfloat16: such encodings travel as float32 (exact) with their dtype.
        return super().state() | {"cache": {
            "indices": self.cache.indices,
            "dtypes": [str(e.dtype).removeprefix("torch.") for e in self.cache.encoded],
            "encoded": [e.float().cpu().numpy() for e in self.cache.encoded]}}

    def restore(self, state: dict) -> None:
        super().restore(state)
        device = self.scorer.torch_device
        self.cache.indices = np.asarray(state["cache"]["indices"], np.int64)
        self.cache.encoded = [torch.from_numpy(e.copy()).to(device, getattr(torch, dtype))
                              for e, dtype in zip(state["cache"]["encoded"],
                                                  state["cache"]["dtypes"], strict=True)]
