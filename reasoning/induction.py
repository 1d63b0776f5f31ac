"""Induction: rules from descriptions of normal frames, AnomalyRuler-style.

Each batch shows the LLM a few normal descriptions and asks for the four rule sections:
normal rules summarise what is seen; anomaly rules are what would contradict them. Batches
are aggregated by `aggregate_rules` (frequent normal rules, every anomaly rule).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from tqdm import tqdm

from reasoning.llm import LLM
from reasoning.rules import Rules, TITLES, aggregate_rules, parse_rules
from vad.errors import VadError

log = logging.getLogger(__name__)

PROMPT = """You write rules for a surveillance camera. These are descriptions of NORMAL frames:
{descriptions}

Write short rules in four sections. Normal rules summarise the people's activities and the
objects seen above. Anomaly rules describe activities and objects that would be unusual here
(for example a different kind of movement or an object that does not belong).
Use exactly this format, one rule per numbered line:

**{normal_human}:**
1. ...
**{normal_object}:**
1. ...
**{anomaly_human}:**
1. ...
**{anomaly_object}:**
1. ..."""


def induction_prompt(descriptions: Sequence[str]) -> str:
    listed = "\n".join(f"- {d.strip()}" for d in descriptions)
    return PROMPT.format(descriptions=listed, **TITLES)


def induce_rules(descriptions: Sequence[str], llm: LLM, batches: int = 5, batch_size: int = 5,
                 min_fraction: float = 0.5, seed: int = 0, retries: int = 1,
                 max_new_tokens: int = 400) -> tuple[Rules, list[Rules]]:
    """(aggregated rules, per-batch rules). A batch whose answer holds no rules is retried
    and then skipped; induction fails only when every batch fails."""
    pool = [d for d in descriptions if d.strip()]
    if not pool:
        raise VadError("no normal descriptions to induce rules from")
    rng = random.Random(seed)
    per_batch = []
    for b in tqdm(range(batches), desc="induction", unit="batch"):
        sample = rng.sample(pool, min(batch_size, len(pool)))
        for attempt in range(retries + 1):
            answer = llm.generate(induction_prompt(sample), max_new_tokens)
            try:
                per_batch.append(parse_rules(answer, f"batch {b + 1}"))
                break
            except VadError:
                log.warning("batch %d attempt %d: no rules in the answer: %.100r",
                            b + 1, attempt + 1, answer)
    if not per_batch:
        raise VadError(f"the LLM returned no parseable rules in {batches} batches")
    return aggregate_rules(per_batch, min_fraction), per_batch
