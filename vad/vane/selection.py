"""Choosing the option the evidence supports.

`embed` (the default; fixed, with its parameters, before the Ped2 questions were written):
for each option,

    support = max cos(option, anomaly sentence) - normal_weight * max cos(option, normal sentence)
              + attribute_weight * agreement(direction, place and pace the option states)

with all-MiniLM-L6-v2 sentence embeddings. The anomaly sentences name the object the
scorers point at (e.g. "a person with a bicycle") alone and with its pace and place; the
normal sentences name everything else the clip shows ("a person walking"), so an option
describing what is ordinary in the clip loses. Direction, place and pace, which embeddings
cannot tell apart, are read from the option's words (`vad.vane.attributes`) and compared
with the measured ones (-1..1). The highest support wins; ties go to the earlier letter.

`llm`: the configured `reasoning.llm` reads the evidence as text and the question verbatim
and replies with a letter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from vad.config.reasoning import LLMConfig
from vad.config.vane import PipelineAnswererConfig
from vad.errors import VadError
from vad.vane.attributes import agreement, read_attributes
from vad.vane.evidence import ClipEvidence
from vad.vane.questions import Question
from vad.vane.scoring import map_to_letter


class Selector(ABC):
    @abstractmethod
    def choose(self, question: Question, evidence: ClipEvidence) -> tuple[str, str]:
        """(the reply: one letter when it can choose, the reason)."""


def build_selector(settings: PipelineAnswererConfig, llm: LLMConfig | None,
                   device: str = "cpu") -> Selector:
    if settings.selection == "embed":
        return EmbedSelector(settings)
    if llm is None:
        raise VadError("vane.pipeline.selection llm needs reasoning.llm "
                       "(transformers:PATH or openai:URL)")
    from reasoning.llm import build_llm

    return LLMSelector(build_llm(llm, device), settings.llm_max_new_tokens)


class EmbedSelector(Selector):
    def __init__(self, settings: PipelineAnswererConfig):
        from reasoning.embedding import SentenceEncoder

        self.encoder = SentenceEncoder(settings.embedding_model)
        self.normal_weight = settings.normal_weight
        self.attribute_weight = settings.attribute_weight

    def supports(self, options: dict[str, str], evidence: ClipEvidence,
                 ) -> dict[str, tuple[float, float, float, float | None]]:
        """letter -> (support, anomaly similarity, normal similarity, agreement)."""
        texts = list(options.values())
        vectors = self.encoder.encode(texts)
        anomaly = (vectors @ self.encoder.encode(list(evidence.anomaly)).T).max(1)
        normal = ((vectors @ self.encoder.encode(list(evidence.normal)).T).max(1)
                  if evidence.normal else 0.0 * anomaly)
        out = {}
        for k, (letter, text) in enumerate(options.items()):
            agree = agreement(read_attributes(text), evidence.direction, evidence.region,
                              evidence.pace)
            support = (float(anomaly[k]) - self.normal_weight * float(normal[k])
                       + self.attribute_weight * (agree or 0.0))
            out[letter] = (support, float(anomaly[k]), float(normal[k]), agree)
        return out

    def choose(self, question: Question, evidence: ClipEvidence) -> tuple[str, str]:
        options = question.options()
        if not options:
            return "", "no lettered options found in the question"
        supports = self.supports(options, evidence)
        best = max(supports, key=lambda letter: supports[letter][0])  # first on ties
        support, anomaly, normal, agree = supports[best]
        agreed = "" if agree is None else f", direction/place/pace agreement {agree:+.2f}"
        return best, (f"{best}) {options[best]!r}: similarity to the anomaly {anomaly:.2f}, "
                      f"to the normal {normal:.2f}{agreed}; support {support:.2f}")


PROMPT = """A video anomaly detection pipeline watched a short surveillance clip and reports:
{evidence}

Question: {question}

Which option does this evidence support? Reply with the option's letter only."""


class LLMSelector(Selector):
    def __init__(self, llm, max_new_tokens: int):
        self.llm = llm
        self.max_new_tokens = max_new_tokens

    def choose(self, question: Question, evidence: ClipEvidence) -> tuple[str, str]:
        reply = self.llm.generate(PROMPT.format(evidence=evidence.text, question=question.text),
                                  self.max_new_tokens)
        letter = map_to_letter(reply, question.options())
        return (letter or reply), f"LLM replied {reply!r}"
