"""Deduction: judge frame descriptions against rules.

`embed`: a fast matcher. Descriptions are cut into clauses and rules into atoms (the rule
and the concrete alternatives it lists); a clause's anomaly evidence is its best cosine
similarity to an anomaly atom minus its best similarity to a normal atom, and a frame's
score is its strongest clause. Continuous, and it names the best-matching anomaly rule.

`llm`: AnomalyRuler's three-step check (human activities, then environmental objects, then
the verdict) answered as `Verdict / Rule / Reason` lines, parsed leniently, retried when
malformed and marked (score 0.5) when it stays malformed.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from reasoning.llm import LLM
from reasoning.rules import Rules, format_rules
from vad.config.reasoning import DeductionConfig, EmbedDeductionConfig, LLMDeductionConfig
from vad.errors import VadError

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


def build_deducer(config: DeductionConfig, rules: Rules, llm: LLM | None = None) -> Deducer:
    """The deducer of a `reasoning.deduction` section."""
    if config.kind == "embed":
        return EmbedDeducer(rules, config)
    if llm is None:
        raise VadError("llm deduction needs an LLM (reasoning.llm: transformers:DIR or openai:URL)")
    return LLMDeducer(rules, llm, config)


# "There are 12 people in the image": the answer to the describer's counting question,
# present in every description, evidence of nothing.
_HEAD_COUNT = re.compile(r"^there (is|are) (\w+|no) (people|persons?)( in the (image|frame))?$",
                         re.I)


def split_clauses(description: str) -> list[str]:
    clauses = [c.strip() for c in re.split(r"[.;,:!?\n]", description)]
    return [c for c in clauses if len(c) > 3 and not _HEAD_COUNT.match(c)]


_ALTERNATIVES = re.compile(r",|\bor\b|\band\b|/")
_CONDITION = re.compile(r"\s*(when|if|unless|except|especially|without|not|e\.g)\b", re.I)
_EXAMPLES = re.compile(r"\bsuch as\b(.*)|\(([^)]*)\)", re.I)


def rule_atoms(rule: str) -> list[str]:
    """The rule, its alternatives of two words or more ("Person lying or bending down" ->
    "bending down"), and every example it lists ("such as vans, bicycles" -> "vans").
    Single-word alternatives are dropped: cut from their context they mislead
    ("Damaged manhole cover or trees" must not match "trees")."""
    atoms = [rule]
    head = _EXAMPLES.sub("", rule)
    atoms += [a.strip(" .") for a in _ALTERNATIVES.split(head) if len(a.split()) >= 2]
    for match in _EXAMPLES.finditer(rule):
        examples = match.group(1) or match.group(2) or ""
        if not _CONDITION.match(examples):  # "(when not commonly seen)" lists no example
            atoms += [a.strip(" .") for a in re.split(r",|\bor\b|\betc\b", examples)]
    return list(dict.fromkeys(a for a in atoms if len(a) >= 3))


class _AtomIndex:
    def __init__(self, rules: list[str], encoder):
        self.rules = rules
        atoms, owners = [], []
        for k, rule in enumerate(rules):
            for atom in rule_atoms(rule):
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


class EmbedDeducer(Deducer):
    """`verdict_margin`: the margin above which a frame is called an anomaly (the score
    itself stays continuous; evaluation uses only the score)."""

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
            judgements.append(Judgement(float(margin[i]), verdict, rule if verdict else "",
                                        reason))
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


def _field(answer: str, name: str) -> str:
    match = re.search(_FIELD.format(name=name), answer, re.I | re.M)
    return match.group(1).strip() if match else ""


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
                return parsed
        log.warning("unparseable LLM answer after %d tries: %.80r", self.retries + 1, answer)
        return Judgement(0.5, False, "", f"unparseable answer: {answer[:120]!r}", valid=False)

    def judge(self, descriptions: Sequence[str], progress: bool = False) -> list[Judgement]:
        return [self.judge_one(d) for d in tqdm(descriptions, desc="deduction", unit="frame",
                                                 disable=not progress)]
