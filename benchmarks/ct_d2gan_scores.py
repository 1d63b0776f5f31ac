"""Compare frame-score rules of one CT-D2GAN checkpoint on a benchmark, offline and online.

    python benchmarks/ct_d2gan_scores.py --checkpoint checkpoints/ct-d2gan-ped2

Each rule turns the same per-pixel prediction errors into one score per frame: the paper's
whole-frame PSNR, the upper quantile of the error, and the scorer's own rule (that quantile
relative to the same quantile of the frame's change: `relative-q...`). Every rule is calibrated on the
benchmark's training videos, then evaluated with `vad eval`'s two protocols and
post-processing, so the scorer's own rule reproduces `vad eval`'s figures. One line per rule:
`rule=... micro_auc=... macro_auc=... online_micro_auc=...`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import load_scorer
from models.ct_d2gan import CTD2GANScorer, psnr, relative_error, upper_quantile
from models.scoring import iter_clips
from streams.sources import Source
from vad.config import PostprocessConfig
from vad.data.benchmarks import load_benchmark
from vad.errors import VadError
from vad.evaluation import VideoScores, offline_scores, online_scores
from vad.fusion import ScorerSlot
from vad.metrics import frame_metrics
from vad.types import Calibration

Rule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rules(scorer: CTD2GANScorer) -> dict[str, Rule]:
    q, floor = scorer.config.score_quantile, scorer.config.change_floor
    return {
        "psnr": lambda errors, change: -psnr(errors),
        f"error-q{q:g}": lambda errors, change: torch.log(
            upper_quantile(errors, q).clamp_min(1e-10)),
        f"relative-q{q:g}": lambda errors, change: relative_error(errors, change, q, floor),
    }


def rule_scores(scorer: CTD2GANScorer, source: Source, length: int,
                named: dict[str, Rule]) -> dict[str, np.ndarray]:
    """Each rule's score per frame of a source (NaN where the scorer has no prediction)."""
    scores = {name: np.full(length, np.nan) for name in named}
    for clip in iter_clips(scorer, source):
        errors, change = scorer.prediction_errors(clip)
        for name, rule in named.items():
            scores[name][clip.target_indices] = rule(errors, change).double().cpu().numpy()
    return scores


class _Calibrated:
    """What the online fusion needs of a scorer: its calibration."""

    def __init__(self, calibration: Calibration):
        self.calibration = calibration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "data" / "ped2")
    args = parser.parse_args(argv)
    try:
        scorer = load_scorer(args.checkpoint)
        if not isinstance(scorer, CTD2GANScorer):
            raise VadError(f"{args.checkpoint}: not a ct-d2gan checkpoint")
        benchmark = load_benchmark(args.dataset)
    except VadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    named = rules(scorer)
    train = [rule_scores(scorer, source, len(source), named)
             for source in tqdm(benchmark.train.normal_sources(), desc="train videos")]
    test = [rule_scores(scorer, video.open(), len(video.labels), named)
            for video in tqdm(benchmark.test, desc="test videos")]
    post = PostprocessConfig()
    names, labels = [v.name for v in benchmark.test], [v.labels for v in benchmark.test]
    for rule in named:
        normal = np.concatenate([s[rule][~np.isnan(s[rule])] for s in train])
        slot = ScorerSlot(rule, _Calibrated(Calibration.from_scores(normal)), 1.0)
        videos = [VideoScores(v.name, v.labels, {rule: s[rule]}, None)
                  for v, s in zip(benchmark.test, test)]
        offline = frame_metrics(names, labels, offline_scores(videos, {rule: 1.0}, post))
        online = frame_metrics(names, labels, online_scores(videos, [slot], post))
        print(f"rule={rule} micro_auc={offline['micro_auc']:.4f} "
              f"macro_auc={offline['macro_auc']:.4f} online_micro_auc={online['micro_auc']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
