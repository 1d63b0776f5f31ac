"""What a run writes: the official prediction files (one folder per subset, one
`<clip>_preds.txt` per clip: the official script's `--path`), `report.json` (accuracy per
subset, category and question type, counts, malformed and failed answers) and a bar chart
of accuracy per subset beside the published figures."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vad.vane.questions import subset_key
from vad.vane.runner import Record
from vad.vane.scoring import (is_correct, map_to_letter, official_letter, official_line,
                              write_predictions)

# VANE-Bench paper (NAACL 2025 Findings, arXiv 2406.10326), Table 1, accuracy %.
PUBLISHED: dict[str, dict[str, float]] = {
    "ucsdped2": {"Gemini-1.5 Pro": 94.44, "GPT-4o": 86.11, "Video-ChatGPT": 19.44,
                 "LLaMA-VID": 19.44, "VideoChat": 13.88, "Video-LLaMA": 5.55},
    "ucsdped1": {"Gemini-1.5 Pro": 96.67, "GPT-4o": 93.33, "Video-ChatGPT": 40.00},
    "avenue": {"Gemini-1.5 Pro": 100.0, "GPT-4o": 84.85},
    "ucfcrime": {"GPT-4o": 83.16, "Gemini-1.5 Pro": 76.84},
    "sora": {"GPT-4o": 55.80, "Gemini-1.5 Pro": 51.45},
}
PREDICTIONS_DIR = "predictions"


def _judged(record: Record) -> dict[str, Any]:
    q = record.question
    letters = "".join(q.options()) or "ABCD"
    reply = "" if record.reply is None else record.reply
    return {"correct": is_correct(q.answer, reply),
            "read": official_letter(reply, letters),
            "mapped": map_to_letter(reply, q.options()) if record.reply is not None else None,
            "answer": q.answer.rstrip(")")}


def _stats(judged: list[dict[str, Any]], records: list[Record]) -> dict[str, Any]:
    n = len(judged)
    correct = sum(j["correct"] for j in judged)
    mapped = sum(j["mapped"] == j["answer"] for j in judged)
    return {"questions": n, "correct": correct,
            "accuracy": round(100 * correct / n, 2) if n else None,
            "malformed": sum(r.reply is not None and j["read"] is None
                             for j, r in zip(judged, records)),
            "failed": sum(r.reply is None for r in records),
            "mapped_correct": mapped,
            "mapped_accuracy": round(100 * mapped / n, 2) if n else None}


def _grouped(records: Sequence[Record], judged: list[dict[str, Any]], key) -> dict[str, Any]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        name = key(record.question)
        if name is not None:
            groups[name].append(i)
    return {name: _stats([judged[i] for i in idx], [records[i] for i in idx])
            for name, idx in groups.items()}


def build_report(records: Sequence[Record], answerer: str, free_form: bool) -> dict[str, Any]:
    judged = [_judged(r) for r in records]
    subsets = _grouped(records, judged, lambda q: q.subset)
    for name, stats in subsets.items():
        chosen = [i for i, r in enumerate(records) if r.question.subset == name]
        stats["category"] = records[chosen[0]].question.category
        stats["question_types"] = _grouped([records[i] for i in chosen],
                                           [judged[i] for i in chosen], lambda q: q.kind)
        stats["published"] = PUBLISHED.get(subset_key(name), {})
    return {
        "answerer": answerer,
        "free_form": free_form,
        "scoring": "official calc_lmm_vqa_accuracy.py: one trailing ')' stripped, correct "
                   "only if exactly one character equal to the answer; mapped_*: the reply "
                   "mapped to an option (leading or named letter, else the option it quotes)",
        "overall": _stats(judged, list(records)),
        "subsets": subsets,
        "categories": _grouped(records, judged, lambda q: q.category or None),
        "question_types": _grouped(records, judged, lambda q: q.kind),
        "predicted_letters": dict(sorted(Counter(j["read"] or "malformed" for j, r
                                                 in zip(judged, records)
                                                 if r.reply is not None).items())),
        "malformed": [{"id": r.question.id, "reply": r.reply} for j, r in zip(judged, records)
                      if r.reply is not None and j["read"] is None],
        "failed": [{"id": r.question.id, "error": r.error} for r in records if r.reply is None],
        "answers": [{"id": r.question.id, "type": r.question.kind, "answer": j["answer"],
                     "reply": r.reply, "correct": j["correct"], "evidence": r.evidence}
                    for j, r in zip(judged, records)],
    }


def write_outputs(records: Sequence[Record], report: dict[str, Any], out: Path) -> list[Path]:
    """Prediction files per subset and clip, report.json and accuracy.png."""
    by_clip: dict[tuple[str, str], list[str]] = defaultdict(list)
    for record in records:
        q = record.question
        by_clip[(q.subset, q.clip)].append(official_line(q.answer, record.reply or ""))
    for (subset, clip), lines in by_clip.items():
        write_predictions(out / PREDICTIONS_DIR / subset, clip, lines)
    report_path = out / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return [out / PREDICTIONS_DIR, report_path, plot_accuracy(report, out / "accuracy.png")]


def plot_accuracy(report: dict[str, Any], path: Path) -> Path:
    """Accuracy per subset: this run beside each published model's figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from vad.plots import save_figure

    subsets = sorted(report["subsets"])
    models = list(dict.fromkeys(m for s in subsets for m in report["subsets"][s]["published"]))
    series = [(report["answerer"], [report["subsets"][s]["accuracy"] for s in subsets])]
    series += [(m, [report["subsets"][s]["published"].get(m) for s in subsets]) for m in models]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(subsets) * len(series) ** 0.5), 4.2))
    for k, (name, values) in enumerate(series):
        xs = np.arange(len(subsets)) + (k - (len(series) - 1) / 2) * width
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(xs, heights, width, label=name + (" (this run)" if k == 0 else ""),
                      edgecolor="black" if k == 0 else "none", linewidth=1.2)
        for bar, value in zip(bars, values):
            if value is not None:
                ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.1f}",
                        ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(np.arange(len(subsets)), [_label(s, report) for s in subsets], fontsize=8)
    ax.set_ylim(0, 115)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("VANE-Bench accuracy per subset (published: paper Table 1)", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return save_figure(fig, path, dpi=120)


def _label(subset: str, report: dict[str, Any]) -> str:
    return f"{subset}\n({report['subsets'][subset]['questions']} questions)"


def summary_lines(report: dict[str, Any]) -> Iterable[str]:
    """Human-readable lines for the terminal: per subset and per question type."""
    for name, stats in sorted(report["subsets"].items()):
        best = max(stats["published"].items(), key=lambda kv: kv[1], default=None)
        vs = f"  (best published: {best[0]} {best[1]:.2f})" if best else ""
        yield (f"{name}: {stats['accuracy']:.2f} % ({stats['correct']}/{stats['questions']}, "
               f"malformed {stats['malformed']}, failed {stats['failed']}){vs}")
        for kind, kstats in sorted(stats["question_types"].items()):
            yield (f"  {kind}: {kstats['accuracy']:.2f} % "
                   f"({kstats['correct']}/{kstats['questions']})")
    overall = report["overall"]
    yield (f"mapped to an option: {overall['mapped_accuracy']:.2f} % "
           f"({overall['mapped_correct']}/{overall['questions']})")
