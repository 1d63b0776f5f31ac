"""The loop every iteratively trained scorer shares: seeding, a progress bar with the losses,
periodic checkpoints into the scorer's work directory and resuming from them, a loss log
(`losses.jsonl`, one line per iteration) that a resumed run continues and its plot
(`losses.png`), and the flat tensors that keep modules and optimisers in a checkpoint."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.base import CONFIG_FILE, Scorer, load_scorer
from vad.config import fixed_fields
from vad.errors import VadError

LOSS_LOG = "losses.jsonl"
LOSS_PLOT = "losses.png"


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
    log.plot(name)


def module_tensors(name: str, module: Any) -> dict[str, np.ndarray]:
    """A module's state as flat numpy tensors named `name.key`."""
    return {f"{name}.{k}": v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_module_tensors(name: str, module: Any, flat: dict[str, np.ndarray]) -> None:
    import torch

    module.load_state_dict({k[len(name) + 1:]: torch.from_numpy(v.copy())
                            for k, v in flat.items() if k.startswith(f"{name}.")})


def optimizer_tensors(name: str, optimizer: Any) -> dict[str, np.ndarray]:
    """An optimiser's per-parameter state (moments, step counts) as `name.INDEX.FIELD`."""
    flat = {}
    for index, values in optimizer.state_dict()["state"].items():
        flat |= {f"{name}.{index}.{k}": v.detach().cpu().numpy().reshape(-1)
                 if v.ndim == 0 else v.detach().cpu().numpy() for k, v in values.items()}
    return flat


def load_optimizer_tensors(name: str, optimizer: Any, flat: dict[str, np.ndarray]) -> None:
    """Restore `optimizer_tensors`; the learning rates stay the optimiser's own (the config's)."""
    import torch

    state: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if key.startswith(f"{name}."):
            index, field = key[len(name) + 1:].split(".")
            tensor = torch.from_numpy(value.copy())
            state.setdefault(int(index), {})[field] = (
                tensor.reshape(()) if field == "step" else tensor)
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


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

    def plot(self, name: str) -> None:
        from vad.plots import plot_losses

        if self.path is not None and self.lines:
            plot_losses([json.loads(line) for line in self.lines], self.path.with_name(LOSS_PLOT),
                        f"{name} training losses")
