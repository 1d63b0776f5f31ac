"""Training the VadCLIP adapter from video-level labels (upstream's `src/*_train.py`).

Each video's snippet embeddings (from its feature file, or computed from its frames with the
scorer's encoder) are fitted to `visual_length` rows as upstream does: longer videos are
averaged over `visual_length` equal spans, shorter ones zero-padded (the adapter ignores the
padding). A step draws a batch (balanced: `batch_size` normal plus `batch_size` anomalous
videos; mixed: `batch_size` of any label; reshuffled every epoch from (seed, epoch), so a
resumed run sees the same batches) and minimises

    binary MIL (C-branch) + MIL-Align (A-branch) + contrastive_weight * text contrastive

with AdamW, the learning rate multiplied by `lr_decay` after each milestone epoch. Unlike
upstream, which keeps the checkpoint that scores best on the test set, training runs its
epochs and keeps the last weights. Afterwards the scorer is calibrated on the causal scores
of (at most CALIBRATION_VIDEOS of) its normal training videos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.training import (load_module_tensors, load_optimizer_tensors, module_tensors,
                             optimizer_tensors, resumable, run_training, seed_everything)
from models.vadclip.encoders import source_features
from models.vadclip.model import (VadCLIPNet, align_mil_loss, binary_mil_loss,
                                  contrastive_text_loss)
from models.vadclip.scorer import VadCLIPScorer
from models.vadclip.text import PromptTextEncoder
from vad.config.scorers import VadCLIPParams
from vad.data.training import ANOMALOUS, TrainingSet, TrainingVideo
from vad.data.video_lists import video_name
from vad.errors import VadError
from vad.types import Calibration

CALIBRATION_VIDEOS = 100


def fit_length(features: np.ndarray, length: int) -> tuple[np.ndarray, int]:
    """(length, D) rows and how many are real: upstream's `process_feat` (uniform averaging
    of longer videos, zero padding of shorter ones)."""
    if len(features) > length:
        bounds = np.linspace(0, len(features), length + 1).astype(np.int64)
        rows = [features[a:b].mean(0) if b > a else features[a] for a, b in zip(bounds, bounds[1:])]
        return np.stack(rows).astype(np.float32), length
    padded = np.zeros((length, features.shape[1]), np.float32)
    padded[:len(features)] = features
    return padded, len(features)


def class_targets(videos: list[TrainingVideo], classes: dict[str, str]) -> np.ndarray:
    """(videos, C) multi-hot class targets; the normal class is column 0."""
    keys = list(classes)
    targets = np.zeros((len(videos), len(keys)), np.float32)
    for row, video in zip(targets, videos):
        if video.label != ANOMALOUS:
            row[0] = 1
        elif not video.classes:
            if len(keys) != 2:
                raise VadError(f"{video.name}: an anomalous video without its class; with "
                               f"{len(keys) - 1} anomaly classes every anomalous video needs "
                               "one (a list CSV's label)")
            row[1] = 1
        for name in video.classes:
            if name not in classes or name == keys[0]:
                raise VadError(f"{video.name}: class {name!r} is not an anomaly class of the "
                               f"config (classes: {', '.join(keys[1:])})")
            row[keys.index(name)] = 1
    return targets


def epoch_batches(anomalous: np.ndarray, config: VadCLIPParams, epoch: int) -> list[np.ndarray]:
    """The batches (video indices) of an epoch, the same for a given (seed, epoch)."""
    rng = np.random.default_rng([config.seed, epoch])
    size = config.batch_size
    if config.sampling == "mixed":
        order = rng.permutation(len(anomalous))
        return [order[i:i + size] for i in range(0, len(order), size)]
    normal = rng.permutation(np.flatnonzero(~anomalous))
    abnormal = rng.permutation(np.flatnonzero(anomalous))
    steps = min(len(normal), len(abnormal)) // size
    return [np.concatenate([normal[k * size:(k + 1) * size], abnormal[k * size:(k + 1) * size]])
            for k in range(steps)]


def learning_rate(config: VadCLIPParams, epoch: int) -> float:
    """MultiStepLR: the base rate times lr_decay for each milestone already reached."""
    return config.lr * config.lr_decay ** sum(epoch >= m for m in config.milestones)


@dataclass
class Trainer:
    scorer: VadCLIPScorer
    prompts: PromptTextEncoder | None
    optimizer: torch.optim.Optimizer
    step: int = 0

    def state(self) -> dict[str, np.ndarray]:
        return {"train.step": np.array([self.step], np.int64),
                **optimizer_tensors("train.optimizer", self.optimizer)}

    def keep(self) -> None:
        """Put the current weights, class embeddings and training state on the scorer."""
        scorer = self.scorer
        if self.prompts is not None:
            with torch.no_grad():
                scorer.text_features = self.prompts().detach()
            scorer.prompt_state = module_tensors("prompt", self.prompts)
        scorer.training_state = self.state()
        scorer.fitted = True

    def checkpoint(self) -> None:
        self.keep()
        if self.scorer.work_dir is not None:
            self.scorer.save(self.scorer.work_dir)


def losses(scorer: VadCLIPScorer, prompts: PromptTextEncoder | None, x: torch.Tensor,
           lengths: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    valid = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
    text = prompts() if prompts is not None else None
    out = scorer.net(x, valid, text)
    parts = {"binary": binary_mil_loss(out.logits, lengths, 1 - targets[:, 0])}
    if text is not None:
        parts["align"] = align_mil_loss(out.aligned, lengths, targets)
        parts["contrastive"] = contrastive_text_loss(text)
    weight = scorer.config.contrastive_weight
    parts["loss"] = sum(v * (weight if k == "contrastive" else 1.0) for k, v in parts.items())
    return parts


def _feature_loaders(scorer: VadCLIPScorer, videos: list[TrainingVideo],
                     progress: bool) -> list[Callable[[], np.ndarray]]:
    """Feature files are read when their batch needs them (a UCF-Crime list holds ~16,000);
    videos given as frames are embedded once, up front."""
    loaders = []
    for video in videos:
        if video.features is not None:
            loaders.append(video.features)
        else:
            features = source_features(scorer.frame_encoder(), video.source(), scorer.config,
                                       progress)[0]
            loaders.append(lambda f=features: f)
    return loaders


def _batch(loaders, indices: np.ndarray, config: VadCLIPParams, device: torch.device,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    rows, lengths = [], []
    for i in indices:
        features = loaders[i]()
        if features.shape[1] != config.feature_dim:
            raise VadError(f"vadclip: training features are {features.shape[1]}-d, feature_dim "
                           f"is {config.feature_dim}")
        fitted, n = fit_length(features, config.visual_length)
        rows.append(fitted)
        lengths.append(n)
    return (torch.from_numpy(np.stack(rows)).to(device),
            torch.tensor(lengths, device=device))


def train(scorer: VadCLIPScorer, training: TrainingSet, progress: bool = True) -> None:
    config, device = scorer.config, scorer.torch_device
    videos = training.labelled()
    targets = class_targets(videos, config.classes)
    anomalous = targets[:, 0] == 0
    steps = len(epoch_batches(anomalous, config, 0))
    if not steps:
        raise VadError(f"vadclip: no full batch: batch_size {config.batch_size} ({config.sampling}"
                       f") needs more videos than {int((~anomalous).sum())} normal and "
                       f"{int(anomalous.sum())} anomalous")
    loaders = _feature_loaders(scorer, videos, progress)
    seed_everything(config.seed)  # the seed fixes the initial weights
    scorer.net = VadCLIPNet(config).to(device).train()
    prompts = (PromptTextEncoder(scorer.text_tower(), config.class_names, config.prompt_prefix,
                                 config.prompt_postfix, config.feature_dim, device)
               if scorer.text_branch else None)
    parameters = [*scorer.net.parameters(), *(prompts.parameters() if prompts else [])]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    trainer = Trainer(scorer, prompts, optimizer)
    previous = resumable(scorer)
    if previous is not None:
        scorer.net.load_state_dict(previous.net.state_dict())
        if prompts is not None:
            load_module_tensors("prompt", prompts, previous.prompt_state)
        load_optimizer_tensors("train.optimizer", optimizer, previous.training_state)
        trainer.step = int(previous.training_state["train.step"][0])
    target_tensor = torch.from_numpy(targets).to(device)

    def step(i: int) -> dict[str, float]:
        epoch, k = divmod(i, steps)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch)
        indices = epoch_batches(anomalous, config, epoch)[k]
        x, lengths = _batch(loaders, indices, config, device)
        parts = losses(scorer, prompts, x, lengths, target_tensor[torch.from_numpy(indices)])
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        optimizer.step()
        trainer.step = i + 1
        return {name: value.item() for name, value in parts.items()}

    run_training(scorer.name, trainer.step, config.epochs * steps, step, trainer.checkpoint,
                 config.checkpoint_every, scorer.work_dir, progress)
    scorer.net.eval()
    trainer.keep()
    scorer.calibration = _calibration(scorer, videos, loaders)
    trainer.checkpoint()


def _calibration(scorer: VadCLIPScorer, videos: list[TrainingVideo], loaders) -> Calibration:
    """Raw causal scores of normal training videos, one crop per video."""
    seen, scores = set(), []
    for video, load in zip(videos, loaders):
        name = video_name(video.name)
        if video.label == ANOMALOUS or name in seen or len(seen) == CALIBRATION_VIDEOS:
            continue
        seen.add(name)
        scores.append(scorer.causal_scores(load()).anomaly(scorer.config.score))
    return Calibration.from_scores(np.concatenate(scores))
