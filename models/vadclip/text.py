"""VadCLIP's text branch: learnable prompt context around each class name, through a frozen
text encoder.

As upstream's `encode_textprompt`: one learnable embedding per token position of the text
encoder's sequence (std 0.01); for each class, position 0 holds the start token, the class
name's tokens follow `prefix` learnable positions, the end token follows `postfix` more, and
the encoder pools at the end token (CLIP: its causal transformer's end-token state through
the frozen text projection). A BERT sentence encoder (all-MiniLM-L6-v2) may stand in when
no CLIP is available: the same layout between [CLS] and [SEP], mean-pooled over the prompt,
then a learned linear projection to the adapter's width (CLIP needs none: its text space is
the image embeddings' space).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vad.errors import VadError


class ClipTextTower:
    """The frozen text half of a transformers `CLIPModel`."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        config = model.text_model.config
        self.width, self.length = config.hidden_size, config.max_position_embeddings
        self.out_dim = model.text_projection.out_features
        self.start_id, self.end_id = tokenizer.bos_token_id, tokenizer.eos_token_id

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.text_model.embeddings.token_embedding(ids)

    def encode(self, embeddings: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        text = self.model.text_model
        hidden = text.embeddings(inputs_embeds=embeddings)
        n = hidden.shape[1]
        causal = torch.full((n, n), torch.finfo(hidden.dtype).min, device=hidden.device).triu(1)
        hidden = text.encoder(inputs_embeds=hidden,
                              attention_mask=causal.expand(len(hidden), 1, n, n)).last_hidden_state
        hidden = text.final_layer_norm(hidden)
        return self.model.text_projection(hidden[torch.arange(len(hidden)), ends])


class SentenceTextTower:
    """A frozen BERT sentence encoder (sentence-transformers layout: mean pooling)."""

    def __init__(self, directory: Path, device: torch.device):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        try:
            self.model = AutoModel.from_pretrained(directory, local_files_only=True).to(device)
            self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise VadError(f"{directory}: not a sentence-embedding model "
                           f"({str(exc).splitlines()[0]})") from None
        self.model.eval().requires_grad_(False)
        config = self.model.config
        self.width = self.out_dim = config.hidden_size
        self.length = config.max_position_embeddings
        self.start_id, self.end_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids)

    def encode(self, embeddings: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(embeddings.shape[1], device=embeddings.device)
        mask = (positions[None] <= ends[:, None]).long()
        hidden = self.model(inputs_embeds=embeddings, attention_mask=mask).last_hidden_state
        weights = mask[..., None].to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)


class PromptTextEncoder(nn.Module):
    """Class embeddings (C, feature_dim) from learnable prompts around the class names."""

    def __init__(self, tower, class_names: list[str], prefix: int, postfix: int,
                 feature_dim: int, device: torch.device):
        super().__init__()
        self.tower = tower  # frozen and not part of the state: only the prompts are learnt
        token_ids = [tower.tokenizer(name, add_special_tokens=False)["input_ids"]
                     for name in class_names]
        needed = max(prefix + len(ids) + postfix + 2 for ids in token_ids)
        if needed > tower.length:
            raise VadError(f"vadclip: prompts need {needed} tokens, the text encoder takes "
                           f"{tower.length}; shorten prompt_prefix/prompt_postfix")
        # CLIP is pooled by position in its fixed 77-token sequence; BERT needs no padding.
        length = tower.length if isinstance(tower, ClipTextTower) else needed
        self.prompt_embeddings = nn.Parameter(torch.empty(length, tower.width, device=device))
        nn.init.normal_(self.prompt_embeddings, std=0.01)
        self.projection = (None if isinstance(tower, ClipTextTower)
                           else nn.Linear(tower.out_dim, feature_dim, device=device))
        if tower.out_dim != feature_dim and self.projection is None:
            raise VadError(f"vadclip: the CLIP text projection gives {tower.out_dim}-d "
                           f"embeddings, feature_dim is {feature_dim}")
        with torch.no_grad():
            words = [tower.token_embeddings(torch.tensor(
                [tower.start_id, *ids, tower.end_id], device=device)) for ids in token_ids]
        self.words = [w.detach() for w in words]
        self.prefix, self.postfix = prefix, postfix
        self.ends = torch.tensor([prefix + len(ids) + 1 + postfix for ids in token_ids],
                                 device=device)

    def forward(self) -> torch.Tensor:
        embeddings = self.prompt_embeddings.expand(len(self.words), -1, -1).clone()
        for i, words in enumerate(self.words):
            n = len(words) - 2
            embeddings[i, 0] = words[0]
            embeddings[i, self.prefix + 1:self.prefix + 1 + n] = words[1:-1]
            embeddings[i, self.ends[i]] = words[-1]
        encoded = self.tower.encode(embeddings, self.ends)
        return encoded if self.projection is None else self.projection(encoded)
