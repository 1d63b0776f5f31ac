"""AnomalyRuler rules: four sections of numbered rules, read and written as plain text.

    **Rules for Normal Human Activities:**
    1. Walking alone or with another person
    ...

Section headers are recognised by their words (normal/anomaly x human/object), so the
paper's own files (`**Anomaly Non-Human Objects:**`, markdown or not) parse as they are.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vad.errors import VadError

SECTIONS = ("normal_human", "normal_object", "anomaly_human", "anomaly_object")
TITLES = {
    "normal_human": "Rules for Normal Human Activities",
    "normal_object": "Rules for Normal Environmental Objects",
    "anomaly_human": "Rules for Anomaly Human Activities",
    "anomaly_object": "Rules for Anomaly Environmental Objects",
}
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.*\S)\s*$")


@dataclass
class Rules:
    normal_human: list[str] = field(default_factory=list)
    normal_object: list[str] = field(default_factory=list)
    anomaly_human: list[str] = field(default_factory=list)
    anomaly_object: list[str] = field(default_factory=list)

    @property
    def normal(self) -> list[str]:
        return self.normal_human + self.normal_object

    @property
    def anomaly(self) -> list[str]:
        return self.anomaly_human + self.anomaly_object

    def __len__(self) -> int:
        return len(self.normal) + len(self.anomaly)


def _section_of(header: str) -> str | None:
    words = header.lower()
    polarity = ("anomaly" if re.search(r"anomal|abnormal", words)
                else "normal" if "normal" in words else None)
    topic = ("human" if re.search(r"human|activit|people|person", words) and
             not re.search(r"non-human|object|environment", words)
             else "object" if re.search(r"object|environment|non-human|scene", words) else None)
    return f"{polarity}_{topic}" if polarity and topic else None


def _header_section(line: str, numbered: bool) -> str | None:
    """The section a header line opens. Numbered headers ("1. **Normal Human Activities:**",
    as small models write them) must end with a colon so that rules are not taken for them."""
    stripped = re.sub(r"\*\*|__|#", "", line).strip()
    if not stripped or len(stripped) >= 80 or (numbered and not stripped.endswith(":")):
        return None
    return _section_of(stripped.rstrip(":").strip())


def _clean(rule: str) -> str:
    return re.sub(r"\*\*|__", "", rule).strip().rstrip(".").strip()


def parse_rules(text: str, where: str = "rules") -> Rules:
    """Rules from text; lines before the first header and unnumbered prose are ignored."""
    rules = Rules()
    current: str | None = None
    for line in text.splitlines():
        item = _NUMBERED.match(line)
        content = item.group(1) if item else line
        header = _header_section(content, numbered=item is not None)
        if header:
            current = header
        elif item and current is not None and (rule := _clean(content)):
            getattr(rules, current).append(rule)
    if not rules.anomaly and not rules.normal:
        raise VadError(f"{where}: no rules found; expected sections like "
                       f"'{TITLES['anomaly_human']}:' followed by numbered rules")
    return rules


def load_rules(path: str | Path) -> Rules:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise VadError(f"{path}: cannot read rules ({exc.strerror})") from None
    return parse_rules(text, str(path))


def format_rules(rules: Rules) -> str:
    blocks = []
    for section in SECTIONS:
        lines = [f"**{TITLES[section]}:**"]
        lines += [f"{i}. {rule}" for i, rule in enumerate(getattr(rules, section), 1)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def save_rules(rules: Rules, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_rules(rules))
    return path


def _key(rule: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", rule.lower()).strip()


def aggregate_rules(batches: Sequence[Rules], min_fraction: float = 0.5) -> Rules:
    """AnomalyRuler's aggregation: a normal rule is kept when it recurs in at least
    `min_fraction` of the batches (normality is what is seen again and again); every
    anomaly rule is kept (each batch imagines different anomalies). Duplicates merge."""
    if not batches:
        raise VadError("no rule batches to aggregate")
    needed = max(1, round(min_fraction * len(batches)))
    merged = Rules()
    for section in SECTIONS:
        counts: Counter[str] = Counter()
        first_spelling: dict[str, str] = {}
        for batch in batches:
            for rule in dict.fromkeys(getattr(batch, section)):
                counts[_key(rule)] += 1
                first_spelling.setdefault(_key(rule), rule)
        keep_all = section.startswith("anomaly")
        getattr(merged, section).extend(
            first_spelling[key] for key, n in counts.items() if keep_all or n >= needed)
    return merged
