"""Scoring exactly as VANE-Bench's `scripts/calc_lmm_vqa_accuracy.py` decides, and the
prediction files it reads.

The official script reads `GT\\tPred` lines of `<clip>_preds.txt` files, strips each line,
splits it at the tab, strips one trailing ")" from both fields, and counts a prediction
correct only when it is exactly one character equal to the answer (case counts):
`B` and `B)` are right for B; `b`, `B.`, `BC` and an empty answer are wrong. The script
crashes on an empty prediction (the stripped line has no second field), so an empty answer
is written as `<empty>`, which it reads as wrong; tabs and line breaks inside an answer are
written as spaces so that every answer stays on its own line.
"""

from __future__ import annotations

import re
from pathlib import Path

EMPTY = "<empty>"


def official_line(answer: str, prediction: str) -> str:
    """The prediction file line for one question (no newline)."""
    gt = answer[:-1] if answer.endswith(")") else answer
    pred = re.sub(r"[\t\r\n]+", " ", prediction)
    return f"{gt}\t{pred if pred.strip() else EMPTY}"


def score_line(line: str) -> bool:
    """Whether the official script counts this line correct."""
    gt, pred = line.strip().split("\t")
    gt = gt[:-1] if gt.endswith(")") else gt
    pred = pred[:-1] if pred.endswith(")") else pred
    return len(pred) == 1 and gt == pred


def is_correct(answer: str, prediction: str) -> bool:
    return score_line(official_line(answer, prediction))


def official_letter(prediction: str, letters: str) -> str | None:
    """The letter the official script reads in a prediction, None when it reads none of the
    question's letters (a malformed answer: it counts wrong)."""
    pred = re.sub(r"[\t\r\n]+", " ", prediction).rstrip()
    pred = pred[:-1] if pred.endswith(")") else pred
    return pred if len(pred) == 1 and pred in letters else None


# "B", "B)", "(B) ...", "B. ...", "B: ..." but not the article of "A person ..."
_LEADING_LETTER = re.compile(r"^\W{0,3}([A-H])(?:[).:\]]|\s*$)")
_NAMED_LETTER = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-H])\b", re.I)


def map_to_letter(reply: str, options: dict[str, str]) -> str | None:
    """The option a free-form reply picks: a leading letter ("B", "(B) ...", "B. ..."), a
    named one ("the answer is B"), else the one option whose text the reply contains (the
    longest when several do). None when it picks none."""
    text = reply.strip()
    for pattern in (_LEADING_LETTER, _NAMED_LETTER):
        match = pattern.search(text)
        if match and match.group(1).upper() in options:
            return match.group(1).upper()
    said = _words(text)
    contained = [(len(_words(option)), letter) for letter, option in options.items()
                 if _words(option) and f" {_words(option)} " in f" {said} "]
    return max(contained)[1] if contained else None


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def write_predictions(directory: Path, clip: str, lines: list[str]) -> Path:
    """`<clip>_preds.txt` in `directory` (one subset's folder: the official `--path`)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{clip}_preds.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
