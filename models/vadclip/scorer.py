"""The `vadclip` scorer: frames -> frozen snippet embeddings -> the VadCLIP adapter.

Offline (the paper's protocol, `score_features`): a video's snippet embeddings are cut into
chunks of `visual_length` snippets, each adapted on its own. Online (`vad run`/`vad serve`,
the camera's `ScoringSession`): each frame is embedded once, the current snippet's embedding
is the mean of its frames so far, and a frame's score is the adapter's output for the current
snippet with the `online_history - 1` snippets before it: causal, no frame waits for its
snippet to end. Results carry each frame's most likely anomaly class (A-branch) as its label.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from models.base import (InputSpec, LearningType, Scorer, checked_tensor, register_scorer,
                         resolve_device)
from models.scoring import ScoringSession
from models.vadclip.encoders import (FrameEncoder, SnippetPooler, encoder_input, load_clip,
                                     load_clip_tokenizer, open_frame_encoder)
from models.vadclip.model import VadCLIPNet
from vad.config.scorers import VadCLIPParams
from vad.data.models import sentence_model_dir
from vad.data.training import TrainingSet
from vad.errors import VadError
from vad.types import Clip, Label, ScoreResult

ADAPTER_BATCH = 64  # sequences per adapter call when scoring


@dataclass
class SnippetScores:
    """Per snippet: the C-branch probability and the A-branch class probabilities."""

    binary: np.ndarray  # (T,)
    classes: np.ndarray | None  # (T, C), None without a text branch

    def anomaly(self, branch: str) -> np.ndarray:
        """The frame score of a branch: c-branch probability or 1 - P(normal class)."""
        return self.binary if branch == "c-branch" else 1.0 - self.classes[:, 0]


def display_name(prompt: str) -> str:
    """A class's prompt text as an alert label: "fighting" -> "Fighting"."""
    return prompt[:1].upper() + prompt[1:]


@register_scorer("vadclip")
class VadCLIPScorer(Scorer):
    Config = VadCLIPParams
    learning_type = LearningType.WEAKLY_SUPERVISED

    def __init__(self, config: VadCLIPParams | None = None, device: str = "auto"):
        super().__init__(config, device)
        self.torch_device = torch.device(resolve_device(device))
        self.net = VadCLIPNet(self.config).to(self.torch_device).eval()
        self.text_features: torch.Tensor | None = None  # (C, D), fixed once trained
        self.prompt_state: dict[str, np.ndarray] = {}  # the learnt prompts, to resume from
        self.training_state: dict[str, np.ndarray] = {}  # optimiser and step
        self.fitted = False
        self._encoder: FrameEncoder | None = None

    @property
    def text_branch(self) -> bool:
        return self.config.text_encoder != "off"

    @property
    def input_spec(self) -> InputSpec:
        size, grayscale = encoder_input(self.config.encoder)
        return InputSpec(size=size, grayscale=grayscale, context=0)

    def frame_encoder(self) -> FrameEncoder:
        if self._encoder is None:
            encoder = open_frame_encoder(self.config.encoder, self.torch_device,
                                         self.config.encoder_batch)
            if encoder.dim != self.config.feature_dim:
                raise VadError(f"vadclip: encoder {self.config.encoder} gives {encoder.dim}-d "
                               f"embeddings, feature_dim is {self.config.feature_dim}")
            self._encoder = encoder
        return self._encoder

    def text_tower(self):
        """The frozen text encoder the prompts are learnt through (training only)."""
        from models.vadclip.text import ClipTextTower, SentenceTextTower

        kind, _, directory = self.config.text_encoder.partition(":")
        if kind == "sentence":
            return SentenceTextTower(directory or sentence_model_dir(), self.torch_device)
        encoder_kind, _, source = self.config.encoder.partition(":")
        if encoder_kind != "clip":
            raise VadError(f"vadclip: text_encoder clip needs a clip: encoder, not "
                           f"{self.config.encoder}")
        model, _ = load_clip(source, str(self.torch_device))
        return ClipTextTower(model, load_clip_tokenizer(source))

    # -- scoring --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise VadError("vadclip: the scorer is not fitted; run `vad fit` or load a "
                           "checkpoint")

    @torch.no_grad()
    def adapt(self, sequences: list[np.ndarray]) -> list[SnippetScores]:
        """Each (T_i, D) sequence of snippet embeddings (T_i <= visual_length) adapted on its
        own, batched with padding that the adapter ignores."""
        self._check_fitted()
        out = []
        for start in range(0, len(sequences), ADAPTER_BATCH):
            group = sequences[start:start + ADAPTER_BATCH]
            longest = max(len(s) for s in group)
            x = np.zeros((len(group), longest, self.config.feature_dim), np.float32)
            for i, sequence in enumerate(group):
                x[i, :len(sequence)] = sequence
            lengths = torch.tensor([len(s) for s in group], device=self.torch_device)
            valid = torch.arange(longest, device=self.torch_device)[None] < lengths[:, None]
            result = self.net(torch.from_numpy(x).to(self.torch_device), valid, self.text_features)
            binary = torch.sigmoid(result.logits).cpu().numpy()
            classes = (None if result.aligned is None
                       else result.aligned.softmax(dim=-1).cpu().numpy())
            out += [SnippetScores(binary[i, :n], None if classes is None else classes[i, :n])
                    for i, n in enumerate(lengths.tolist())]
        return out

    def score_features(self, features: np.ndarray) -> SnippetScores:
        """The paper's test protocol: chunks of visual_length snippets adapted separately."""
        length = self.config.visual_length
        chunks = self.adapt([features[i:i + length] for i in range(0, len(features), length)])
        return _joined(chunks)

    def causal_scores(self, features: np.ndarray) -> SnippetScores:
        """Each snippet as the online scorer sees it when it ends: the adapter over it and the
        online_history - 1 snippets before it, its output for the last one."""
        history = self.config.history
        windows = [features[max(0, t + 1 - history):t + 1] for t in range(len(features))]
        return _joined([_last(s) for s in self.adapt(windows)])

    def session(self, camera_id: str, batch: int) -> ScoringSession:
        self._check_fitted()
        return _OnlineSession(self, camera_id, batch)

    def score(self, clip: Clip) -> ScoreResult:
        return self.session(clip.camera_id, len(clip.indices)).score(clip)

    def labels(self, scores: SnippetScores) -> tuple[Label, ...] | None:
        """The most likely anomaly class of each row, with its probability."""
        if scores.classes is None:
            return None
        names = [display_name(name) for name in self.config.class_names]
        best = scores.classes[:, 1:].argmax(axis=1) + 1
        return tuple(Label(names[c], float(p)) for c, p in
                     zip(best, scores.classes[np.arange(len(best)), best]))

    def fit(self, training: TrainingSet, progress: bool = True) -> None:
        from models.vadclip.train import train

        train(self, training, progress)

    # -- checkpoint -----------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        flat = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        if self.text_features is not None:
            flat["text_features"] = self.text_features.cpu().numpy()
        return flat | self.prompt_state | self.training_state

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        weights = {k[4:]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                   if k.startswith("net.")}
        try:
            self.net.load_state_dict(weights)
        except RuntimeError as exc:
            raise VadError(f"vadclip: checkpoint does not fit the config "
                           f"({str(exc).splitlines()[1].strip()})") from None
        if self.text_branch:
            shape = (len(self.config.classes), self.config.feature_dim)
            self.text_features = torch.from_numpy(
                checked_tensor(tensors, "text_features", shape).copy()).to(self.torch_device)
        self.net.to(self.torch_device).eval()
        self.prompt_state = {k: v for k, v in tensors.items() if k.startswith("prompt.")}
        self.training_state = {k: v for k, v in tensors.items() if k.startswith("train.")}
        self.fitted = True


def _joined(parts: list[SnippetScores]) -> SnippetScores:
    return SnippetScores(np.concatenate([p.binary for p in parts]),
                         None if parts[0].classes is None
                         else np.concatenate([p.classes for p in parts]))


def _last(scores: SnippetScores) -> SnippetScores:
    return SnippetScores(scores.binary[-1:],
                         None if scores.classes is None else scores.classes[-1:])


class _OnlineSession(ScoringSession):
    """One camera: the frame encoder's stream, the current snippet, the snippets before it."""

    def __init__(self, scorer: VadCLIPScorer, camera_id: str, batch: int):
        super().__init__(scorer, camera_id, batch)
        self.pooler = SnippetPooler(scorer.frame_encoder().stream(), scorer.config)
        self.history: deque[np.ndarray] = deque(maxlen=scorer.config.history - 1)

    def score(self, clip: Clip) -> ScoreResult:
        scorer: VadCLIPScorer = self.scorer
        completed, partial, before = self.pooler.push(clip.frames[clip.context:])
        keep = self.history.maxlen
        past = list(self.history)
        sequences = []
        for current, done in zip(partial, before):
            earlier = (past + completed[:done])[-keep:] if keep else []
            sequences.append(np.stack([*earlier, current]))
        self.history.extend(completed)
        scores = _joined([_last(s) for s in scorer.adapt(sequences)])
        return ScoreResult(clip.camera_id, clip.target_indices,
                           scores.anomaly(scorer.config.score).astype(np.float64),
                           labels=scorer.labels(scores))
