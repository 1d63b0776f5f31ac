"""`vad:CONFIG`: the pipeline itself answers VANE-Bench questions.

The clip's frames are scored by the scorers of the config file (their checkpoints), the
anomalous object is the detected object their heatmaps point at, it is described by the
detector and the motion describer (or the configured VLM describer), and the option is
chosen from that evidence (`vad.vane.selection`). The reply is one letter, scored like any
model's, so the product's own explanations compare with video-language models on the same
questions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from vad.config import load_config
from vad.config.vane import VaneConfig
from vad.types import Frame
from vad.vane.answerers import ANSWERERS, Answer, Answerer
from vad.vane.evidence import ClipEvidence, EvidenceExtractor
from vad.vane.questions import ClipFrame, Question
from vad.vane.selection import build_selector

NOMINAL_FPS = 10.0  # VANE frames carry no times; timestamps are frame number / this


@ANSWERERS.register("vad")
class PipelineAnswerer(Answerer):
    def __init__(self, target: str, config: VaneConfig, device: str = "cpu"):
        from models.base import resolve_device
        from vad.pipeline import ScorerCache

        pipeline = load_config(target)
        device = resolve_device(pipeline.device)
        slots = ScorerCache(device).slots(pipeline)
        settings = pipeline.vane.pipeline
        self.extractor = EvidenceExtractor(slots, pipeline.reasoning, settings, device)
        self.selector = build_selector(settings, pipeline.reasoning.llm, device)
        self._evidence: OrderedDict[tuple, ClipEvidence] = OrderedDict()  # a clip's questions
        self._lock = threading.Lock()  # an abandoned (timed-out) call must not interleave

    def evidence(self, question: Question, frames: Sequence[ClipFrame]) -> ClipEvidence:
        key = (question.subset, question.clip, tuple(f.index for f in frames))
        if key not in self._evidence:
            clip = [Frame(question.clip, f.index, f.index / NOMINAL_FPS, f.image())
                    for f in frames]
            self._evidence[key] = self.extractor.evidence(clip)
            while len(self._evidence) > 4:
                self._evidence.popitem(last=False)
        return self._evidence[key]

    def answer(self, question: Question, frames: Sequence[ClipFrame]) -> Answer:
        with self._lock:
            evidence = self.evidence(question, frames)
            reply, reason = self.selector.choose(question, evidence)
        return Answer(reply, f"{evidence.text} Choice: {reason}")
