"""Rule atoms and their keywords, read from the structure of the rules themselves.

A rule such as "Using any non-walking movement such as riding a bicycle or scooter,
skateboarding" is cut into *atoms*: the phrases of its head and of its examples
("such as …", "e.g. …", "including …", parentheses), with shared words distributed over
alternatives ("riding a bicycle or scooter" -> "riding a bicycle", "riding scooter";
"Missing or ajar manhole covers" -> "missing manhole covers", "ajar manhole covers";
"Damaged manhole cover or trees" -> "damaged trees").

Each atom gets its *key*: the words that must be seen for it to count.
- Only the atom's core counts: the words before a place complement ("Loitering | around
  trash bin", "Person lying | on the ground"); function words, hypernyms ("objects",
  "movement"), light verbs ("using", "engaging") and negated words ("non-walking",
  "without a clear purpose") are dropped.
- Words that also occur in the normal rules are the scene, not the anomaly ("Damaged
  manhole cover" when "Manhole covers on the ground" is normal keys on "damaged").
- An activity (a participle or gerund: "riding", "thrown") is enough by itself, any one
  of them; the thing it acts on ("bicycle" of "riding a bicycle") alone counts
  `OBJECT_OF_ACTIVITY`; otherwise every remaining word is needed ("unattended bag",
  "wrong direction").
- A bare thing given as an example of a qualified hypernym ("Unusual objects such as
  signs") is only an example of what may be unusual: its weight is `EXAMPLE_OF_QUALIFIED`.
- "more than N people" / "at least N …" is a count condition on the description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reasoning.rules import Rules
from reasoning.text import (GENERIC, LIGHT_VERBS, SPATIAL, STOPWORDS, is_adjective,
                            is_head, is_noun, is_verb_form, lemmas, words)

EXAMPLE_OF_QUALIFIED = 0.5
OBJECT_OF_ACTIVITY = 0.5

_EXAMPLES = re.compile(r"\b(?:such as|e\.g\.?|for example|including|like)\s+([^()]*)|"
                       r"\(([^)]*)\)", re.I)
_CONDITION = re.compile(r"^\s*(when|if|unless|except|especially|without|not|only|"
                        r"in case)\b", re.I)
_ALTERNATIVES = re.compile(r",|;|\bor\b|\band/or\b|\band\b|/|\betc\b\.?", re.I)
_COUNT = re.compile(r"\b(?:more than|over|at least|above)\s+(\d+)\s+(\w+)|"
                    r"\b(\d+)\s+or more\s+(\w+)", re.I)


@dataclass(frozen=True)
class Atom:
    phrase: str  # the atom as cut from its rule
    rule: str  # the whole rule
    human: bool  # from a human-activity section: said of a person
    activities: tuple[str, ...]  # any one of these words is enough
    words: tuple[str, ...]  # else all of these are needed
    weight: float = 1.0
    count: tuple[str, int] | None = None  # (noun, at least) from "more than N people"
    objects: tuple[str, ...] = ()  # the things of an activity ("bicycle" of "riding a bicycle")

    @property
    def keyword(self) -> str:
        """The key as text: "riding", "unattended bag", "people>=6"."""
        if self.count:
            return f"{self.count[0]}>={self.count[1]}"
        return " | ".join(self.activities) if self.activities else " ".join(self.words)


def content_words(text: str) -> list[str]:
    """Words that can carry meaning: no function words, hypernyms, light verbs, or words
    under a negation ("non-walking", "without a clear purpose")."""
    out, negated = [], False
    for word in words(text):
        if word in {"without", "not", "no", "never"}:
            negated = True
            continue
        if negated or word.startswith("non-") or word.isdigit():
            continue
        if word in STOPWORDS or word in GENERIC or lemmas(word) & LIGHT_VERBS:
            continue
        out.append(word)
    return out


def normal_vocabulary(rules: Rules) -> frozenset[str]:
    """Every lemma of the normal rules' content words, the modifiers of compounds aside
    ("hydrant" of "fire hydrant", not "fire"): what the scene normally has."""
    found: set[str] = set()
    for rule in rules.normal:
        ws = words(rule)
        content = set(content_words(rule))
        for i, word in enumerate(ws):
            if word in content and (is_head(ws, i) or not is_noun(word)):
                found |= lemmas(word)
    return frozenset(found)


def _is_qualifier(word: str) -> bool:
    return is_adjective(word) or (is_verb_form(word) and word.endswith(("ed", "en")))


def _distribute(fragments: list[str]) -> list[str]:
    """Share words between alternatives: leading qualifiers or a leading activity over
    bare nouns, a trailing noun over bare qualifiers, a verb over place fragments."""
    parts = [words(f) for f in fragments]
    out = []
    first = parts[0]
    lead = []  # qualifiers or the activity that opens the first alternative
    for word in first:
        if _is_qualifier(word) or (not lead and is_verb_form(word)):
            lead.append(word)
        elif word not in STOPWORDS:
            break
    for i, ws in enumerate(parts):
        if not ws:
            continue
        content = [w for w in ws if w not in STOPWORDS]
        if i > 0 and ws[0] in SPATIAL and first and is_verb_form(first[0]):
            ws = [first[0]] + ws  # "Climbing on trees or into manholes"
        elif i > 0 and content and all(is_noun(w) and not _is_qualifier(w) for w in content):
            ws = lead + ws  # "Damaged manhole cover or trees" -> "damaged trees"
        elif content and all(_is_qualifier(w) for w in content):
            later = next((p for p in parts[i + 1:] if p and p[0] not in SPATIAL
                          and any(is_noun(w) for w in p)), [])
            nouns = [w for w in later if is_noun(w) and not _is_qualifier(w)]
            ws = ws + nouns  # "Missing or ajar manhole covers" -> "missing manhole covers"
        out.append(" ".join(ws))
    return out


def _core(phrase: str) -> str:
    """The words before the first place complement (the whole phrase if nothing is left)."""
    ws = words(phrase)
    for i, word in enumerate(ws):
        if i > 0 and word in SPATIAL and content_words(" ".join(ws[:i])):
            return " ".join(ws[:i])
    return phrase


def _atom(phrase: str, rule: str, human: bool, scene: frozenset[str],
          weight: float) -> Atom | None:
    count = _COUNT.search(phrase)
    if count:
        number, noun = (count.group(1), count.group(2)) if count.group(1) else (
            count.group(3), count.group(4))
        return Atom(phrase, rule, human, (), (), weight, (noun.lower(), int(number) + (
            0 if count.group(3) or "least" in count.group(0).lower() else 1)))
    content = [w for w in content_words(_core(phrase)) if not lemmas(w) & scene]
    if not content:
        return None
    activities = tuple(w for w in content if is_verb_form(w) and not _is_qualifier(w))
    if activities:
        things = tuple(w for w in content if w not in activities and is_noun(w)
                       and not is_verb_form(w))
        return Atom(phrase, rule, human, activities, (), weight, objects=things)
    return Atom(phrase, rule, human, (), tuple(content), weight)


def _examples(rule: str) -> tuple[str, list[str]]:
    head, examples = rule, []
    for match in _EXAMPLES.finditer(rule):
        listed = match.group(1) if match.group(1) is not None else match.group(2)
        if not _CONDITION.match(listed):
            examples.append(listed)
    head = _EXAMPLES.sub(" ", rule)
    return head, examples


def rule_phrases(rule: str) -> list[tuple[str, float]]:
    """(phrase, prior weight) of every alternative of a rule's head and of its examples."""
    head, examples = _examples(rule)
    qualified_hypernym = (any(w in GENERIC for w in words(head))
                          and any(_is_qualifier(w) for w in content_words(head)))
    phrases = [(p, 1.0) for p in _distribute(_ALTERNATIVES.split(head))]
    for listed in examples:
        for phrase in _distribute(_ALTERNATIVES.split(listed)):
            bare_thing = not any(is_verb_form(w) and not _is_qualifier(w)
                                 for w in content_words(phrase))
            phrases.append((phrase, EXAMPLE_OF_QUALIFIED if qualified_hypernym and bare_thing
                            else 1.0))
    return [(p, w) for p, w in phrases if words(p)]


def rule_atoms(rule: str, human: bool, scene: frozenset[str] = frozenset()) -> list[Atom]:
    """The atoms of one anomaly rule that have a key (see the module docstring)."""
    atoms = [_atom(p, rule, human, scene, w) for p, w in rule_phrases(rule)]
    unique: dict[tuple, Atom] = {}
    for atom in atoms:
        if atom is not None:
            key = (atom.activities, atom.words, atom.count, atom.objects)
            if key not in unique or unique[key].weight < atom.weight:
                unique[key] = atom
    return list(unique.values())


def anomaly_atoms(rules: Rules) -> list[Atom]:
    """Every keyed atom of the anomaly rules, scene words taken from the normal rules."""
    scene = normal_vocabulary(rules)
    atoms = []
    for section, human in (("anomaly_human", True), ("anomaly_object", False)):
        for rule in getattr(rules, section):
            atoms += rule_atoms(rule, human, scene)
    return atoms


def anomaly_keywords(rules: Rules) -> list[str]:
    """The keywords of the rules, as AnomalyRuler's keyword base uses them."""
    return list(dict.fromkeys(atom.keyword for atom in anomaly_atoms(rules)))
