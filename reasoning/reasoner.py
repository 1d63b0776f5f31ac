"""Explained alerts: describe an event's key frames, judge them against the rules, and
return the evidence an operator reads (verdict, broken rule, reason, objects, motion).

The pipeline calls `Reasoner.explain` per event, off the scoring path, and copies the
fields onto `vad.types.Alert`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from reasoning.deduction import DEFAULT_DEDUCER, Deducer, build_deducer
from reasoning.describers import Describer, build_describer
from reasoning.llm import build_llm
from reasoning.rules import load_rules
from vad.config import ReasoningConfig
from vad.errors import VadError
from vad.types import Event, Explanation, Frame


def pick_keyframes(event: Event, frames: Sequence[Frame], count: int) -> list[int]:
    """Positions in `frames` of up to `count` event frames spread over it, peak first."""
    inside = [i for i, f in enumerate(frames) if event.start_frame <= f.index <= event.end_frame]
    if not inside:
        raise VadError(f"event {event.camera_id}:{event.start_frame}-{event.end_frame}: "
                       "none of the given frames lies in it")
    peak = min(inside, key=lambda i: abs(frames[i].index - event.peak_frame))
    spread = [inside[int(round(k))] for k in np.linspace(0, len(inside) - 1, count)]
    return list(dict.fromkeys([peak] + spread))[:count]


def split_description(description: str) -> tuple[str, str]:
    """(objects, motion): counting and `Other than people` sentences vs the rest."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", description) if s.strip()]
    is_objects = [bool(re.match(r"(there (is|are)\b|other than people)", s, re.I))
                  for s in sentences]
    objects = " ".join(s for s, o in zip(sentences, is_objects) if o)
    motion = " ".join(s for s, o in zip(sentences, is_objects) if not o)
    return objects, motion or description.strip()


class Reasoner:
    def __init__(self, describer: Describer, deducer: Deducer, keyframes: int):
        self.describer = describer
        self.deducer = deducer
        self.keyframes = keyframes

    def explain(self, event: Event, frames: list[Frame]) -> Explanation:
        """`frames`: the event's frames in order (earlier context frames help motion)."""
        if not frames:
            raise VadError("explain needs the event's frames")
        descriptions = self.describer.describe(frames)
        keys = pick_keyframes(event, frames, self.keyframes)
        judgements = self.deducer.judge([descriptions[i] for i in keys])
        best = max(range(len(keys)), key=lambda k: judgements[k].score)
        judgement, description = judgements[best], descriptions[keys[best]]
        objects, motion = split_description(description)
        return Explanation(judgement.verdict, judgement.rule, judgement.reason, objects, motion)


def build_reasoner(config: ReasoningConfig, device: str = "cpu") -> Reasoner | None:
    """The reasoner of a `reasoning` section; None when it names no rules."""
    if config.rules is None:
        return None
    llm = build_llm(config.llm, device) if config.llm else None
    # the config tree's default deducer (embed) predates `fast`: a section that names no
    # deducer gets DEFAULT_DEDUCER until the tree has a `fast` section
    deduction = config.deduction if "deduction" in config.model_fields_set else DEFAULT_DEDUCER
    deducer = build_deducer(deduction, load_rules(config.rules), llm)
    return Reasoner(build_describer(config.describer, device), deducer, config.keyframes)
