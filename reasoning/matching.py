"""Rule matchers without an LLM: the keyword base and the fast deducer.

`keyword`: AnomalyRuler's base. A frame is anomalous (1) when its description contains the
key of one anomaly atom of the rules (`reasoning.atoms`), else normal (0). Words match by
lemma ("bicycles" = "bicycle", "ran" = "running"); nothing else.

`fast`: the same keys read with care, continuous, and naming the rule it matched:
- negation: a key under "no", "not", "nobody", "without", "zero" … does not count;
- the actor: an activity of a human-activity rule counts only when said of a person (or of
  nobody in particular): "a dog running" is not a person running, and in "a person standing
  next to a bicycle" the person's activity is standing (the bicycle alone counts
  `atoms.OBJECT_OF_ACTIVITY` for "riding a bicycle");
- nouns count as heads only ("fire" of "fire hydrant" is not a fire);
- hedged mentions ("possibly running") count `hedge_factor`;
- words that stand for a key: same lemma (1.0) or, with embeddings, a word whose cosine
  similarity to the key word (all-MiniLM-L6-v2) is at least `synonym_similarity`
  ("bike" for "bicycles", "jogging" for "running"), counted at that similarity; a word the
  normal rules use is never a stand-in ("car" is no "vehicle" where cars are normal);
- counts: "more than N people" in a rule is checked against "there are M people";
- an atom's weight is its structural prior (`atoms.EXAMPLE_OF_QUALIFIED`) times, when normal
  descriptions are given (those the rules were induced from), one minus the fraction of
  normal frames in which it matches: what this scene always shows is no evidence.
A frame's score is its strongest atom's evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from reasoning.atoms import OBJECT_OF_ACTIVITY, Atom, anomaly_atoms, normal_vocabulary
from reasoning.deduction import DEDUCERS, Deducer, Judgement
from reasoning.rules import Rules
from reasoning.text import (STOPWORDS, Clause, clauses, count_of, is_adjective, is_noun,
                            is_person, is_verb_form, lemmas, words)
from vad.errors import VadError


def _needs_head(key_word: str) -> bool:
    return is_noun(key_word) and not is_verb_form(key_word) and not is_adjective(key_word)


@dataclass(frozen=True)
class Evidence:
    strength: float
    atom: Atom | None = None
    clause: str = ""
    word: str = ""


NO_EVIDENCE = Evidence(0.0)


def _judgement(evidence: Evidence, verdict_above: float) -> Judgement:
    atom = evidence.atom
    if atom is None or evidence.strength <= 0:
        return Judgement(0.0, False, "", "no anomaly rule's key is in the description")
    verdict = evidence.strength >= verdict_above
    reason = (f'"{evidence.clause}": "{evidence.word}" matches the anomaly rule '
              f'"{atom.rule}" (key "{atom.keyword}", evidence {evidence.strength:.2f})')
    return Judgement(evidence.strength, verdict, atom.rule if verdict else "", reason)


class _AtomDeducer(Deducer):
    def __init__(self, rules: Rules):
        super().__init__(rules)
        self.atoms = anomaly_atoms(rules)
        if not self.atoms:
            raise VadError("no anomaly rule has a word to match (after removing the words "
                           "the normal rules also use)")


@DEDUCERS.register("keyword")
class KeywordDeducer(_AtomDeducer):
    """Binary: 1 when any atom's key is in the description (lemmas, nothing else)."""

    def _evidence(self, description: str) -> Evidence:
        found = set()
        for word in words(description):
            found |= lemmas(word)
        parts = clauses(description)
        for atom in self.atoms:
            if atom.count:
                noun = lemmas(atom.count[0])
                hit = any((count_of(c, noun) or 0) >= atom.count[1] for c in parts)
            elif atom.activities:
                hit = any(lemmas(w) & found for w in atom.activities)
            else:
                hit = all(lemmas(w) & found for w in atom.words)
            if hit:
                return Evidence(1.0, atom, description.strip()[:80], atom.keyword)
        return NO_EVIDENCE

    def judge(self, descriptions: Sequence[str], progress: bool = False) -> list[Judgement]:
        return [_judgement(self._evidence(d), 0.5)
                for d in tqdm(descriptions, desc="deduction", unit="frame",
                              disable=not progress)]


@dataclass(frozen=True)
class FastConfig:
    """Settings of the `fast` deducer (fixed before any Ped2 figure was seen)."""

    synonym_similarity: float = 0.75  # word cosine from which a word stands for a key word
    hedge_factor: float = 0.5  # "possibly running" counts this much
    verdict_above: float = 0.5  # evidence from which the verdict is "anomaly"
    embeddings: bool = True  # synonyms by embedding (else lemmas only)
    embedding_model: str | None = None  # sentence-transformers directory; None = MiniLM


@DEDUCERS.register("fast")
class FastDeducer(_AtomDeducer):
    def __init__(self, rules: Rules, normal_descriptions: Sequence[str] | None = None,
                 config: FastConfig = FastConfig()):
        super().__init__(rules)
        self.config = config
        self.key_words = sorted({w for a in self.atoms
                                 for w in a.activities + a.words + a.objects})
        self.scene = normal_vocabulary(rules)
        self._key_index = {w: i for i, w in enumerate(self.key_words)}
        self._key_lemmas = [lemmas(w) for w in self.key_words]
        self._key_heads = [_needs_head(w) for w in self.key_words]
        self._matches: dict[str, dict[int, float]] = {}
        self.encoder = None
        if config.embeddings:
            from reasoning.embedding import SentenceEncoder

            self.encoder = SentenceEncoder(config.embedding_model)
            self._key_vectors = self.encoder.encode(self.key_words)
        self.weights = np.array([a.weight for a in self.atoms])
        if normal_descriptions:
            self.weights *= 1.0 - self.normal_rates(normal_descriptions)

    def normal_rates(self, normal_descriptions: Sequence[str]) -> np.ndarray:
        """Per atom: the fraction of normal frames in which it matches."""
        self._learn_words(normal_descriptions)
        hits = np.zeros(len(self.atoms))
        for description in normal_descriptions:
            hits += self._atom_strengths(clauses(description)) > 0
        return hits / len(normal_descriptions)

    def _learn_words(self, descriptions: Sequence[str]) -> None:
        """Which key words each new description word stands for, and how strongly."""
        new = sorted({w for d in descriptions for w in words(d)
                      if w not in STOPWORDS and w not in self._matches})
        if not new:
            return
        similar = (self.encoder.encode(new) @ self._key_vectors.T if self.encoder is not None
                   else np.zeros((len(new), len(self.key_words))))
        for word, row in zip(new, similar):
            # a word of the normal rules is the scene: never a stand-in for an anomaly key
            found = {} if lemmas(word) & self.scene else {
                k: float(s) for k, s in enumerate(row) if s >= self.config.synonym_similarity}
            found.update({k: 1.0 for k, key in enumerate(self._key_lemmas)
                          if lemmas(word) & key})
            self._matches[word] = found

    def _word_strengths(self, parts: list[Clause], human: bool) -> list[dict[tuple, tuple]]:
        """Per sentence: (key word, as head?) -> (strength, word, clause) of its best
        mention; "as head" mentions head their noun group ("cart", not "golf" of "golf
        cart"), which a noun must do to stand for itself."""
        sentences: dict[int, dict[tuple, tuple]] = {}
        for clause in parts:
            best = sentences.setdefault(clause.sentence, {})
            for token in clause.tokens:
                if token.negated or (human and is_verb_form(token.word)
                                     and not is_person(token.actor)):
                    continue  # "a dog running" is no person running
                for key, strength in self._matches.get(token.word, {}).items():
                    strength *= self.config.hedge_factor if token.hedged else 1.0
                    places = [(key, False)] + ([] if token.modifier else [(key, True)])
                    for place in places:
                        if strength > best.get(place, (0.0,))[0]:
                            best[place] = (strength, token.word, clause.text)
        return list(sentences.values())

    def _mention(self, found: dict[tuple, tuple], word: str, last: bool = True):
        """The best mention of a key word; a noun must head its group where `last`."""
        key = self._key_index[word]
        return found.get((key, last and self._key_heads[key]))

    def _atom_evidence(self, atom: Atom, parts: list[Clause],
                       per_sentence: list[dict[int, tuple]]) -> tuple[float, str, str]:
        if atom.count:
            noun = lemmas(atom.count[0])
            for clause in parts:
                if (count_of(clause, noun) or 0) >= atom.count[1]:
                    return 1.0, atom.count[0], clause.text
            return 0.0, "", ""
        best = (0.0, "", "")
        for found in per_sentence:
            if atom.activities:
                options = [m for w in atom.activities if (m := self._mention(found, w))]
                options += [(m[0] * OBJECT_OF_ACTIVITY,) + m[1:] for w in atom.objects
                            if (m := self._mention(found, w))]
                candidate = max(options, default=(0.0, "", ""), key=lambda c: c[0])
            else:  # all words; only the last must head its noun group ("golf cart")
                needed = [self._mention(found, w, i == len(atom.words) - 1)
                          for i, w in enumerate(atom.words)]
                candidate = (min(n[0] for n in needed), needed[-1][1], needed[-1][2]) if all(
                    needed) else (0.0, "", "")
            best = max(best, candidate, key=lambda c: c[0])
        return best

    def _atom_strengths(self, parts: list[Clause]) -> np.ndarray:
        return np.array([e[0] for e in self._evidences(parts)])

    def _evidences(self, parts: list[Clause]) -> list[tuple[float, str, str]]:
        by_human = {human: self._word_strengths(parts, human) for human in (False, True)}
        return [self._atom_evidence(atom, parts, by_human[atom.human]) for atom in self.atoms]

    def evidence(self, description: str) -> Evidence:
        parts = clauses(description)
        found = self._evidences(parts)
        strengths = np.array([f[0] for f in found]) * self.weights
        best = int(strengths.argmax())
        if strengths[best] <= 0:
            return NO_EVIDENCE
        return Evidence(float(strengths[best]), self.atoms[best], found[best][2], found[best][1])

    def judge(self, descriptions: Sequence[str], progress: bool = False) -> list[Judgement]:
        self._learn_words(descriptions)
        return [_judgement(self.evidence(d), self.config.verdict_above)
                for d in tqdm(descriptions, desc="deduction", unit="frame",
                              disable=not progress)]
