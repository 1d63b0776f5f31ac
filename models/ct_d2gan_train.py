"""Adversarial training of CT-D2GAN on normal footage, with periodic checkpoints and resume.

Training frames are decoded once, preprocessed to the model input and kept in memory as
uint8: a GAN samples thousands of random clips, and re-decoding H.264 for each would cost
more than the network on a CPU. Batch i is drawn from a generator seeded by (seed, i), so a
resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from models.ct_d2gan import (
    CTD2GANScorer,
    ImageDiscriminator,
    VideoDiscriminator,
    gradient_difference_loss,
)
from models.scoring import progress_frames
from models.training import (load_module_tensors, load_optimizer_tensors, module_tensors,
                             optimizer_tensors, resumable, run_training, seed_everything)
from streams.sources import Source
from streams.windows import preprocess
from vad.config.scorers import CTD2GANParams
from vad.errors import VadError


@dataclass
class GanParts:
    """Everything that trains besides the generator, which the scorer owns."""

    image_disc: nn.Module
    video_disc: nn.Module
    opt_generator: torch.optim.Optimizer
    opt_discriminator: torch.optim.Optimizer
    iteration: int = 0

    @classmethod
    def create(cls, scorer: CTD2GANScorer) -> GanParts:
        config, device = scorer.config, scorer.torch_device
        image_disc = ImageDiscriminator(config.channels, config.disc_width).to(device)
        video_disc = VideoDiscriminator(config.channels, config.disc_width).to(device)
        betas = (0.5, 0.999)
        return cls(image_disc, video_disc,
                   torch.optim.Adam(scorer.generator.parameters(), config.lr_generator,
                                    betas=betas),
                   torch.optim.Adam([*image_disc.parameters(), *video_disc.parameters()],
                                    config.lr_discriminator, betas=betas))

    def modules(self) -> dict[str, nn.Module]:
        return {"image_disc": self.image_disc, "video_disc": self.video_disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_generator": self.opt_generator, "opt_discriminator": self.opt_discriminator}

    def state(self) -> dict[str, np.ndarray]:
        """Flat numpy tensors for the checkpoint."""
        flat = {"train.iteration": np.array([self.iteration], np.int64)}
        for name, module in self.modules().items():
            flat |= module_tensors(name, module)
        for name, optimizer in self.optimizers().items():
            flat |= optimizer_tensors(name, optimizer)
        return flat

    def load_state(self, flat: dict[str, np.ndarray]) -> None:
        self.iteration = int(flat["train.iteration"][0])
        for name, module in self.modules().items():
            load_module_tensors(name, module, flat)
        for name, optimizer in self.optimizers().items():
            load_optimizer_tensors(name, optimizer, flat)


def load_training_frames(sources: Sequence[Source], config: CTD2GANParams,
                         progress: bool) -> list[np.ndarray]:
    """Each source's frames as (N, C, H, W) uint8 at the model input size."""
    videos = []
    for source in sources:
        frames = [np.round(preprocess(frame.image, config.size, config.grayscale) * 255)
                  .astype(np.uint8)
                  for frame in progress_frames(source, f"decode {source.camera_id}", progress)]
        if len(frames) > config.frames:
            stacked = np.stack(frames)
            videos.append(stacked[:, None] if config.grayscale
                          else stacked.transpose(0, 3, 1, 2))
    if not videos:
        raise VadError(f"ct-d2gan: no training source has more than {config.frames} frames")
    return videos


def sample_batch(videos: list[np.ndarray], config: CTD2GANParams, iteration: int,
                 ) -> np.ndarray:
    """(B, T+1, C, H, W) float32 clips of consecutive frames, the same for a given iteration."""
    rng = np.random.default_rng([config.seed, iteration])
    starts = np.array([len(v) - config.frames for v in videos])
    chosen = rng.choice(len(videos), size=config.batch_size, p=starts / starts.sum())
    clips = [videos[v][s:s + config.frames + 1]
             for v, s in zip(chosen, rng.integers(0, starts[chosen]))]
    return np.stack(clips).astype(np.float32) / 255.0


def _least_squares(output: torch.Tensor, target: float) -> torch.Tensor:
    return (output.float() - target).square().mean()


def train_step(scorer: CTD2GANScorer, parts: GanParts, batch: torch.Tensor,
               ) -> dict[str, float]:
    """One generator then one discriminator update on a (B, T+1, C, H, W) batch."""
    config = scorer.config
    past, target = batch[:, :-1], batch[:, -1]
    prediction = scorer.generator(past)
    intensity = (prediction - target).square().mean()
    gradient = gradient_difference_loss(prediction, target)
    adv_image = _least_squares(parts.image_disc(prediction), 1.0) / 2
    adv_video = _least_squares(parts.video_disc(torch.cat([past, prediction[:, None]], 1)),
                               1.0) / 2
    loss_g = (config.intensity_weight * intensity + config.gradient_weight * gradient
              + config.image_adv_weight * adv_image + config.video_adv_weight * adv_video)
    parts.opt_generator.zero_grad(set_to_none=True)
    loss_g.backward()
    parts.opt_generator.step()

    fake = prediction.detach()
    d_image = (_least_squares(parts.image_disc(target), 1.0)
               + _least_squares(parts.image_disc(fake), 0.0)) / 2
    d_video = (_least_squares(parts.video_disc(batch), 1.0)
               + _least_squares(parts.video_disc(torch.cat([past, fake[:, None]], 1)), 0.0)) / 2
    parts.opt_discriminator.zero_grad(set_to_none=True)
    (d_image + d_video).backward()
    parts.opt_discriminator.step()
    parts.iteration += 1
    return {"g": loss_g.item(), "int": intensity.item(), "gd": gradient.item(),
            "adv_i": adv_image.item(), "adv_v": adv_video.item(),
            "d_i": d_image.item(), "d_v": d_video.item()}


def resume(scorer: CTD2GANScorer, parts: GanParts) -> None:
    """Continue from the checkpoint in `scorer.work_dir`, if one is there."""
    previous = resumable(scorer)
    if previous is None:
        return
    if not previous.training_state:
        raise VadError(f"{scorer.work_dir}: checkpoint has no training state to resume from")
    scorer.generator.load_state_dict(previous.generator.state_dict())
    parts.load_state(previous.training_state)


def checkpoint(scorer: CTD2GANScorer, parts: GanParts) -> None:
    scorer.training_state = parts.state()
    if scorer.work_dir is not None:
        scorer.save(scorer.work_dir)


def train(scorer: CTD2GANScorer, sources: Sequence[Source], progress: bool = True) -> None:
    config = scorer.config
    seed_everything(config.seed)  # re-initialise so that the seed fixes the initial weights
    scorer.generator = scorer.new_generator()
    parts = GanParts.create(scorer)
    resume(scorer, parts)
    videos = load_training_frames(sources, config, progress)
    scorer.generator.train()

    def step(iteration: int) -> dict[str, float]:
        batch = sample_batch(videos, config, iteration)
        with scorer.autocast():
            return train_step(scorer, parts, torch.from_numpy(batch).to(scorer.torch_device))

    run_training(scorer.name, parts.iteration, config.iterations, step,
                 lambda: checkpoint(scorer, parts), config.checkpoint_every, scorer.work_dir,
                 progress)
    scorer.generator.eval()
    scorer.calibrate(sources, progress)
    checkpoint(scorer, parts)
