"""Asking every question: a progress bar, a per-attempt timeout, retries with backoff, and an
answer cache (one JSON line per answered question, written as it comes) so that an
interrupted run resumes where it stopped. Failed questions are not cached: a rerun asks
them again."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vad.config.vane import VaneConfig
from vad.errors import VadError
from vad.vane.answerers import Answer, Answerer
from vad.vane.questions import Question, choose_frames

log = logging.getLogger(__name__)

CACHE_FILE = "answers.jsonl"


@dataclass(frozen=True)
class Record:
    """A question and what became of it: the reply, or the error of its last attempt."""

    question: Question
    reply: str | None  # None: every attempt failed
    evidence: str = ""
    error: str = ""
    cached: bool = False


def cache_key(answerer: str, config: VaneConfig, question: Question) -> str:
    """What an answer depends on: the answerer, the frames it saw, the mode, the question."""
    what = [answerer, config.frames, config.free_form, question.subset, question.clip,
            question.number, question.text]
    return hashlib.sha1(json.dumps(what).encode()).hexdigest()


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Cached answers by key; a line cut short by an interruption is ignored."""
    if not path.is_file():
        return {}
    cached = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("reply"), str) and "key" in entry:
            cached[entry["key"]] = entry
    return cached


def ask_all(questions: Sequence[Question], answerer: Answerer, config: VaneConfig,
            out: Path, progress: bool = True) -> list[Record]:
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / CACHE_FILE
    cached = read_cache(cache_path)
    records, failures_in_a_row = [], 0
    bar = tqdm(questions, desc=f"vane {answerer.spec}", unit="question", disable=not progress)
    with cache_path.open("a", encoding="utf-8") as cache:
        for question in bar:
            key = cache_key(answerer.spec, config, question)
            if key in cached:
                entry = cached[key]
                records.append(Record(question, entry["reply"], entry.get("evidence", ""),
                                      cached=True))
                continue
            frames = choose_frames(question.frames, config.frames)
            answer, error = _ask(lambda: answerer.answer(question, frames), config,
                                 question.id)
            if answer is None:
                records.append(Record(question, None, error=error))
                failures_in_a_row += 1
                if failures_in_a_row >= config.max_consecutive_failures:
                    raise VadError(f"{answerer.spec}: {failures_in_a_row} questions in a row "
                                   f"failed (last: {error}); answers so far are cached in "
                                   f"{cache_path}: rerun to resume")
                continue
            failures_in_a_row = 0
            cache.write(json.dumps({"key": key, "id": question.id, "reply": answer.text,
                                    "evidence": answer.evidence}) + "\n")
            cache.flush()
            records.append(Record(question, answer.text, answer.evidence))
    return records


def _ask(call: Callable[[], Answer], config: VaneConfig,
         what: str) -> tuple[Answer | None, str]:
    """The answer, or None and the last error after `1 + retries` attempts."""
    delay, error = config.backoff_s, ""
    for attempt in range(config.retries + 1):
        if attempt:
            time.sleep(delay)
            delay *= 2
        try:
            return call_with_timeout(call, config.timeout_s), ""
        except Exception as exc:  # any failure of one question is retried, then recorded
            error = str(exc) or type(exc).__name__
            log.warning("%s: attempt %d failed: %s", what, attempt + 1, error)
    return None, error


def call_with_timeout(call: Callable[[], Answer], timeout: float) -> Answer:
    """`call()` on a daemon thread; past `timeout` it is abandoned (a local model cannot be
    stopped mid-generation, so it finishes in the background) and TimeoutError raised."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["answer"] = call()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="vane-answer", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["answer"]
