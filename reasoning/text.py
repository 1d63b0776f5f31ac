"""English text for rule matching: words, lemmas, word classes, clauses with their subject,
negation, hedging and counts. Rule-based on top of `lemminflect` (lemmas and the word
classes a word can take, from data shipped in its wheel; nothing is downloaded).

Everything here is general English (function words, negation cues, person nouns); no word
of any dataset's scenes is listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")

STOPWORDS = frozenset("""
a an the this that these those some any each every all both either neither other another
such same own few many much more most several various certain
i you he she it we they me him her us them my your his its our their one ones
is are was were be been being am do does did doing have has had having will would shall
should can could may might must
and or but nor so yet if then than as because while when where whether which who whom whose
what how also too very quite rather just only even still again really almost
of in on at by for with about against between into through during before after above below
to from up down out off over under around near along across behind beside besides towards
toward within without upon onto via per among amid beyond inside outside like unlike
there here etc e.g eg i.e ie something anything everything nothing someone anyone everyone
image frame picture scene view background foreground left right top bottom middle center
centre side corner front back first second third fourth fifth sixth seventh eighth ninth
tenth eleventh twelfth last next
""".split())

# Prepositions that open a place or company complement ("on the ground", "near a bin"):
# what follows them is where or beside what something happens, not the thing itself.
SPATIAL = frozenset("""
on in at near around along across behind beside besides by into onto from towards toward
under over above below inside outside through past between among next close with within
""".split())

# Hypernyms that name no particular thing or activity ("unusual objects", "any movement").
GENERIC = frozenset("""
person people individual individuals human humans someone somebody anybody object objects
item items thing things stuff activity activities behavior behaviour behaviors behaviours
movement movements motion action actions area areas place places presence kind type sort
part way manner situation event events element elements entity entities
""".split())

# Verbs that carry no activity of their own ("using any movement", "engaging in a fight").
LIGHT_VERBS = frozenset("be have do use engage make get go come move take appear seem involve "
                        "perform show include become remain keep exhibit display".split())

PERSON_NOUNS = frozenset("""
person persons people man men woman women boy boys girl girls child children kid kids
pedestrian pedestrians individual individuals someone somebody anyone everyone nobody
adult adults teenager teenagers student students guy guys lady ladies gentleman gentlemen
he she they who one ones crowd group couple pair
""".split())

NEGATORS = frozenset("no not never none nobody nothing neither nor without cannot "
                     "n't zero".split())
HEDGES = frozenset("possibly perhaps maybe might could probably likely unclear uncertain "
                   "presumably".split())
NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


@lru_cache(maxsize=65536)
def word_classes(word: str) -> dict[str, tuple[str, ...]]:
    """{class: lemmas} for the classes `word` can take (NOUN, VERB, ADJ, ADV, ...)."""
    from lemminflect import getAllLemmas

    return dict(getAllLemmas(word))


@lru_cache(maxsize=65536)
def lemmas(word: str) -> frozenset[str]:
    """Every lemma `word` may have, itself included: "running" -> {running, run}."""
    found = {word}
    for forms in word_classes(word).values():
        found.update(forms)
    return frozenset(found)


def is_verb_form(word: str) -> bool:
    """A participle or gerund ("riding", "thrown", "parked") that can be a verb."""
    return "VERB" in word_classes(word) and re.search(r"(ing|ed|en|wn)$", word) is not None


def is_adjective(word: str) -> bool:
    """`word` reads as an adjective first ("unattended", "yellow"; not "ground")."""
    classes = list(word_classes(word))
    return bool(classes) and classes[0] == "ADJ"


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("’", "'"))


@dataclass(frozen=True)
class Token:
    word: str
    negated: bool  # inside a negation's scope ("no bicycle", "nobody is running")
    hedged: bool  # inside a hedge's scope ("possibly running")
    actor: str  # who or what it is said of: the nearest noun before it ("" when unknown)
    modifier: bool  # a noun follows it ("fire" of "fire hydrant")


@dataclass(frozen=True)
class Clause:
    text: str
    tokens: tuple[Token, ...]
    sentence: int  # clauses of one sentence share this number


_SENTENCES = re.compile(r"(?<=[.!?;:])\s+|\n")
_CLAUSES = re.compile(r",|\band\b|\bbut\b|\bwhile\b|\bwhereas\b|\bwhich\b")


def is_noun(word: str) -> bool:
    return word in PERSON_NOUNS or ("NOUN" in word_classes(word) and word not in STOPWORDS
                                    and not is_verb_form(word))


def is_head(ws: list[str], i: int) -> bool:
    """`ws[i]` heads its noun group: no noun follows ("bin" of "trash bin", not "trash")."""
    return not (i + 1 < len(ws) and is_noun(ws[i + 1]))


def is_person(actor: str) -> bool:
    """An actor that may be a person: a person noun, or unknown."""
    return actor == "" or actor in PERSON_NOUNS


def _negator(word: str) -> bool:
    return word in NEGATORS or word.endswith("n't") or word == "0"


def clauses(description: str) -> list[Clause]:
    """Sentences cut at commas and conjunctions. Each token knows whether it is negated
    (to the clause's end), hedged, and its actor. A clause with no noun before a word
    continues the previous clause's actor ("the first person is walking, the second is
    running"); a verbless list fragment after a negated clause stays negated ("there are
    no cars, vans or bicycles"); "non-walking" negates only itself."""
    out: list[Clause] = []
    subject, negated_before = "", False
    for number, sentence in enumerate(_SENTENCES.split(description)):
        for piece in _CLAUSES.split(sentence):
            ws = words(piece)
            if not ws:
                continue
            has_verb = any(is_verb_form(w) or w in {"is", "are", "was", "were"} for w in ws)
            negated, hedged, actor, tokens = negated_before and not has_verb, False, subject, []
            # nouns that can be an actor; hypernyms ("their actions") name no one
            heads = [is_noun(w) and is_head(ws, i) and (w not in GENERIC or w in PERSON_NOUNS)
                     for i, w in enumerate(ws)]
            for i, word in enumerate(ws):
                if _negator(word):
                    negated = True
                elif word in HEDGES:
                    hedged = True
                else:
                    actor = word if heads[i] else actor
                    # "a running dog": the participle is said of the noun after it
                    said_of = ws[i + 1] if (is_verb_form(word) and i + 1 < len(ws)
                                            and heads[i + 1]) else actor
                    tokens.append(Token(word, negated or word.startswith("non-"), hedged,
                                        said_of, not is_head(ws, i)))
            # what the next clause continues: who does this clause's last verb, or the
            # first thing it names ("they are walking, running, or standing")
            verbs = [t.actor for t in tokens if is_verb_form(t.word)]
            nouns = [w for w, head in zip(ws, heads) if head]
            subject = verbs[-1] if verbs else nouns[0] if nouns else subject
            negated_before = negated
            out.append(Clause(piece.strip(), tuple(tokens), number))
    return out


def count_of(clause: Clause, noun_lemmas: frozenset[str]) -> int | None:
    """The number a clause gives for a noun ("there are 12 people" -> 12), if any."""
    ws = [t.word for t in clause.tokens]
    for i, word in enumerate(ws[:-1]):
        value = int(word) if word.isdigit() else NUMBERS.get(word)
        if value is not None and lemmas(ws[i + 1]) & noun_lemmas:
            return value
    return None
