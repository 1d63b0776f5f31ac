"""AnomalyRuler's robust reasoning: an LLM double-checks the frames perception smoothing
called normal, and can only turn them into anomalies (as `mixtral_double_deduct` does).

Before it asks, the description of a frame whose own evidence smoothing overruled loses the
clauses that carried that evidence (the paper's description editing), so the LLM judges
what the smoothed decision says is there. Frames decided anomalous keep their decision
without a call. The verdict is read as P(anomaly) from the log-probabilities of the verdict
tokens where the backend gives them (transformers; OpenAI-compatible servers that return
`logprobs`), else as the generated verdict (1/0), and 0.5 when it cannot be read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from reasoning.deduction import Deducer, Judgement, verdict_probability
from reasoning.llm import LLM
from reasoning.rules import Rules, format_rules
from reasoning.text import clauses

PROMPT = """You are monitoring a surveillance camera. Double-check my initial anomaly detection result using these rules.

{rules}
Scene description: {description}

My initial result is Normal; help me double check.
First, if a human activity is present, which rule does it match, normal or anomaly?
Second, if a non-human object is present, which rule does it match, normal or anomaly?
Third, answer Anomaly if ANY anomaly rule matches, even a single one; otherwise answer Normal.
Answer with one word: Anomaly or Normal."""


def without_evidence(description: str, deducer: Deducer) -> str:
    """The description less the clauses in which `deducer` finds anomaly evidence."""
    parts = clauses(description)
    judged = deducer.judge([c.text for c in parts])
    kept = [c.text for c, j in zip(parts, judged) if j.score <= 0]
    return ", ".join(kept) + "." if kept else "Nothing unusual is described."


class RobustReasoner:
    def __init__(self, rules: Rules, llm: LLM, max_new_tokens: int = 8):
        self.llm = llm
        self.max_new_tokens = max_new_tokens
        self._rules_text = format_rules(rules)
        self._memo: dict[str, tuple[float, bool]] = {}

    @property
    def calls(self) -> int:
        """Distinct descriptions asked so far."""
        return len(self._memo)

    def check(self, description: str) -> tuple[float, bool]:
        if description not in self._memo:
            prompt = PROMPT.format(rules=self._rules_text, description=description.strip())
            self._memo[description] = verdict_probability(self.llm, prompt, "",
                                                          self.max_new_tokens)
        return self._memo[description]

    def recheck(self, descriptions: Sequence[str], judgements: Sequence[Judgement],
                decisions: np.ndarray, deducer: Deducer, progress: bool = False
                ) -> tuple[np.ndarray, list[Judgement]]:
        """Per frame: 1 where perception decided anomaly, else the LLM's P(anomaly)."""
        values = np.ones(len(descriptions))
        out = list(judgements)
        todo = [t for t in range(len(descriptions)) if not decisions[t]]
        for t in tqdm(todo, desc="robust reasoning", unit="frame", disable=not progress):
            text = descriptions[t]
            if judgements[t].score > 0:
                text = without_evidence(text, deducer)
            p, valid = self.check(text)
            values[t] = p
            out[t] = Judgement(p, p >= 0.5, "", f"LLM double-check: P(anomaly) = {p:.2f}", valid)
        return values, out
