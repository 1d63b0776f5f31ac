"""Deduction: judge frame descriptions against rules.

`embed`: a fast matcher. Descriptions are cut into clauses and rules into atoms (the rule
and the concrete alternatives it lists); a clause's anomaly evidence is its best cosine
similarity to an anomaly atom minus its best similarity to a normal atom, and a frame's
score is its strongest clause. Continuous, and it names the best-matching anomaly rule.

`llm`: AnomalyRuler's three-step check (human activities, then environmental objects, then
the verdict) answered as `Verdict / Rule / Reason` lines, parsed leniently, retried when
malformed and marked (score 0.5) when it stays malformed. Where the backend gives
log-probabilities, the score is P(anomaly) of the verdict token after "Verdict:".

`keyword` and `fast` (no LLM) are in reasoning/matching.py.
"""

from __future__ import annotations

import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from reasoning.atoms import rule_phrases
from reasoning.llm import LLM
from reasoning.rules import Rules, format_rules
from vad.config.reasoning import DeductionConfig, EmbedDeductionConfig, LLMDeductionConfig
from vad.errors import VadError
from vad.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """One description judged: `score` is higher for more anomalous."""

    score: float
    verdict: bool
    rule: str = ""
    reason: str = ""
    valid: bool = True


class Deducer(ABC):
    def __init__(self, rules: Rules):
        if not rules.anomaly:
            raise VadError("deduction needs at least one anomaly rule")
        self.rules = rules

    @abstractmethod
    def judge(self, descriptions: Sequence[str], progress: bool = False) -> list[Judgement]: ...


DEDUCERS: Registry[Deducer] = Registry("deducer")
DEFAULT_DEDUCER = "fast"


def build_deducer(config: DeductionConfig | str, rules: Rules, llm: LLM | None = None,
                  **params) -> Deducer:
    """The deducer of a `reasoning.deduction` section, or a registered one by name with its
    own defaults: `keyword`, `fast` (reasoning/matching.py), `embed`, `llm`; `params` go to
    its constructor."""
    import reasoning.matching  # noqa: F401  (registers keyword and fast)

    name = config if isinstance(config, str) else config.kind
    if not isinstance(config, str):
        params["config"] = config
    if name == "llm":
        if llm is None:
            raise VadError("llm deduction needs an LLM (reasoning.llm / --llm: "
                           "transformers:DIR or openai:URL)")
        params["llm"] = llm
    return DEDUCERS.create(name, rules=rules, **params)


def deducer_names() -> list[str]:
    import reasoning.matching  # noqa: F401

    return DEDUCERS.names()


# "There are 12 people in the image": the answer to the describer's counting question,
# present in every description, evidence of nothing.
_HEAD_COUNT = re.compile(r"^there (is|are) (\w+|no) (people|persons?)( in the (image|frame))?$",
                         re.I)


def split_clauses(description: str) -> list[str]:
    clauses = [c.strip() for c in re.split(r"[.;,:!?\n]", description)]
    return [c for c in clauses if len(c) > 3 and not _HEAD_COUNT.match(c)]


class _AtomIndex:
    def __init__(self, rules: list[str], encoder):
        self.rules = rules
        atoms, owners = [], []
        for k, rule in enumerate(rules):
            for atom in dict.fromkeys([rule] + [p for p, _ in rule_phrases(rule)]):
                atoms.append(atom)
                owners.append(k)
        self.owners = np.array(owners, dtype=np.int64)
        self.vectors = encoder.encode(atoms) if atoms else None

    def best(self, clause_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per clause: best similarity and the index of the rule that owns that atom."""
        if self.vectors is None:
            zeros = np.zeros(len(clause_vectors))
            return zeros, np.full(len(clause_vectors), -1)
        sims = clause_vectors @ self.vectors.T
        best = sims.argmax(axis=1)
        return sims[np.arange(len(sims)), best], self.owners[best]


@DEDUCERS.register("embed")
class EmbedDeducer(Deducer):
    """`verdict_margin`: the margin above which a frame is called an anomaly. The score is
    the margin through a logistic centred there (0.5 at the verdict margin, `margin_scale`
    wide), so that it reads in [0, 1] like the other deducers' scores."""

    margin_scale = 0.05

    def __init__(self, rules: Rules, config: EmbedDeductionConfig = EmbedDeductionConfig()):
        super().__init__(rules)
        self.verdict_margin = config.verdict_margin
        from reasoning.embedding import SentenceEncoder

        self.encoder = SentenceEncoder(config.embedding_model)
        self.anomaly = _AtomIndex(rules.anomaly, self.encoder)
        self.normal = _AtomIndex(rules.normal, self.encoder)

    def judge(self, descriptions: Sequence[str], progress: bool = False) -> list[Judgement]:
        clauses = [split_clauses(d) or [d.strip() or "nothing"] for d in descriptions]
        flat = [c for cs in clauses for c in cs]
        vectors = self.encoder.encode(flat)
        anomaly_sim, anomaly_rule = self.anomaly.best(vectors)
        normal_sim, _ = self.normal.best(vectors)
        margin = anomaly_sim - normal_sim
        judgements, start = [], 0
        for cs in tqdm(clauses, desc="deduction", unit="frame", disable=not progress):
            i = start + int(margin[start:start + len(cs)].argmax())
            start += len(cs)
            rule = self.rules.anomaly[anomaly_rule[i]]
            verdict = bool(margin[i] > self.verdict_margin)
            reason = (f'"{flat[i]}" is closer to the anomaly rule "{rule}" '
                      f"({anomaly_sim[i]:.2f}) than to any normal rule ({normal_sim[i]:.2f})"
                      if verdict else
                      "no part of the description is clearly closer to an anomaly rule than "
                      f'to a normal rule (closest: "{rule}", margin {margin[i]:.2f})')
            score = 1.0 / (1.0 + math.exp(-(margin[i] - self.verdict_margin)
                                          / self.margin_scale))
            judgements.append(Judgement(score, verdict, rule if verdict else "", reason))
        return judgements


PROMPT = """You are monitoring a surveillance camera. Decide whether the scene is normal or an anomaly using these rules.

{rules}
Scene description: {description}

Check in three steps:
1. Human activities: does any person do something listed under the anomaly human activity rules?
2. Environmental objects: is any object listed under the anomaly environmental object rules present?
3. Verdict: Anomaly if step 1 or step 2 found a match, even a single one; otherwise Normal.

Reply with exactly three lines:
Verdict: Anomaly or Normal
Rule: the broken rule, or None
Reason: one sentence"""

_VERDICT = re.compile(r"verdict\s*[:\-]\s*\**\s*(anomal\w*|abnormal|normal)", re.I)
_FIELD = r"^\W*{name}\s*[:\-]\s*\**\s*(.+?)\s*\**\s*$"


_PLACEHOLDERS = {"anomaly or normal", "the broken rule, or none", "one sentence"}


def parse_answer(answer: str) -> Judgement | None:
    """`Verdict/Rule/Reason` lines; a bare answer naming only one of anomaly/normal is
    accepted as the verdict. None when no verdict can be read, or when the answer just
    echoes the format's placeholders (small models do)."""
    fields = [_field(answer, name).lower().rstrip(".") for name in ("verdict", "rule", "reason")]
    if any(f in _PLACEHOLDERS for f in fields):
        return None
    match = _VERDICT.search(answer)
    if match:
        verdict = not match.group(1).lower().startswith("normal")
    else:
        words = set(re.findall(r"\b(anomal\w*|abnormal|normal)\b", answer.lower()))
        kinds = {w.startswith("normal") for w in words}
        if len(kinds) != 1:
            return None
        verdict = not kinds.pop()
    rule = _field(answer, "rule")
    if rule.lower().rstrip(".") in {"none", "n/a", "no rule", "-", ""}:
        rule = ""
    reason = _field(answer, "reason") or answer.strip().splitlines()[-1].strip()
    reason = re.split(r"(?<=[.!?])\s", reason, maxsplit=1)[0]
    return Judgement(1.0 if verdict else 0.0, verdict, rule if verdict else "", reason)


VERDICTS = ("Anomaly", "Normal")


def anomaly_probability(logprobs: dict[str, float]) -> float:
    """P(Anomaly) of the two verdict tokens, renormalised between them."""
    return 1.0 / (1.0 + math.exp(logprobs["Normal"] - logprobs["Anomaly"]))


def verdict_probability(llm: LLM, prompt: str, answer_prefix: str = "",
                        max_new_tokens: int = 8) -> tuple[float, bool]:
    """(P(anomaly), whether a verdict was read): from the log-probabilities of the verdict
    tokens where the backend gives them, else the generated verdict as 1/0 (0.5 when it
    cannot be read)."""
    logprobs = llm.option_logprobs(prompt, VERDICTS, answer_prefix)
    if logprobs is not None:
        return anomaly_probability(logprobs), True
    parsed = parse_answer(llm.generate(prompt, max_new_tokens))
    if parsed is None:
        return 0.5, False
    return float(parsed.verdict), True


def _field(answer: str, name: str) -> str:
    match = re.search(_FIELD.format(name=name), answer, re.I | re.M)
    return match.group(1).strip() if match else ""


@DEDUCERS.register("llm")
class LLMDeducer(Deducer):
    def __init__(self, rules: Rules, llm: LLM, config: LLMDeductionConfig = LLMDeductionConfig()):
        super().__init__(rules)
        self.llm = llm
        self.retries = config.retries
        self.max_new_tokens = config.max_new_tokens
        self._rules_text = format_rules(rules)

    def judge_one(self, description: str) -> Judgement:
        prompt = PROMPT.format(rules=self._rules_text, description=description.strip())
        answer = ""
        for _ in range(self.retries + 1):
            answer = self.llm.generate(prompt, self.max_new_tokens)
            parsed = parse_answer(answer)
            if parsed is not None:
                logprobs = self.llm.option_logprobs(prompt, VERDICTS, "Verdict:")
                if logprobs is None:
                    return parsed
                return replace(parsed, score=anomaly_probability(logprobs))
        log.warning("unparseable LLM answer after %d tries: %.80r", self.retries + 1, answer)
        return Judgement(0.5, False, "", f"unparseable answer: {answer[:120]!r}", valid=False)

    def judge(self, descriptions: Sequence[str], progress: bool = False) -> list[Judgement]:
        return [self.judge_one(d) for d in tqdm(descriptions, desc="deduction", unit="frame",
                                                 disable=not progress)]
