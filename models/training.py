"""The loop every iteratively trained scorer shares: seeding, a progress bar with the losses,
periodic checkpoints into the scorer's work directory and resuming from them, and a loss
log (`losses.jsonl`, one line per iteration) that a resumed run continues."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
import numpy as np
from tqdm import tqdm

from models.base import CONFIG_FILE, Scorer, load_scorer
from vad.config import fixed_fields
from vad.errors import VadError

LOSS_LOG = "losses.jsonl"


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resumable(scorer: Scorer) -> Scorer | None:
    """The checkpoint in `scorer.work_dir` to continue from, if any; it must agree on every
    params field the weights depend on."""
    directory = scorer.work_dir
    if directory is None or not (Path(directory) / CONFIG_FILE).is_file():
        return None
    previous = load_scorer(directory, device=scorer.device)
    if previous.name != scorer.name:
        raise VadError(f"{directory}: holds a {previous.name!r} checkpoint, not {scorer.name!r}")
    different = sorted(f for f in fixed_fields(type(scorer.config))
                       if getattr(previous.config, f) != getattr(scorer.config, f))
    if different:
        raise VadError(f"{directory}: holds a {scorer.name} with other {', '.join(different)}; "
                       "train into a new directory")
    return previous


def run_training(name: str, start: int, iterations: int, step: Callable[[int], dict[str, float]],
                 checkpoint: Callable[[], None], checkpoint_every: int,
                 work_dir: Path | None, progress: bool = True) -> None:
    """Iterations `start`..`iterations`-1 of `step(i) -> losses`, checkpointing every
    `checkpoint_every` iterations and at the end."""
    log = _LossLog(work_dir, start)
    bar = tqdm(range(start, iterations), initial=start, total=iterations, desc=f"{name} fit",
               unit="it", disable=not progress)
    for iteration in bar:
        losses = step(iteration)
        log.add(iteration + 1, losses)
        bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
        if (iteration + 1) % checkpoint_every == 0:
            checkpoint()
            log.flush()
    checkpoint()
    log.flush()


class _LossLog:
    """Losses per iteration; entries past the resumed iteration (written after the last
    checkpoint of an interrupted run) are dropped, so the log matches the weights."""

    def __init__(self, work_dir: Path | None, start: int):
        self.path = Path(work_dir) / LOSS_LOG if work_dir is not None else None
        self.lines: list[str] = []
        if self.path is not None and self.path.is_file():
            self.lines = [line for line in self.path.read_text().splitlines()
                          if line and json.loads(line).get("iteration", 0) <= start]
        self.pending = 0

    def add(self, iteration: int, losses: dict[str, float]) -> None:
        self.lines.append(json.dumps({"iteration": iteration, **losses}))
        self.pending += 1

    def flush(self) -> None:
        if self.path is None or not self.pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(self.lines) + "\n")
        self.pending = 0
